"""The report's sections, each built from the runs it concerns: model card, evaluation, suspiciousness,
synthesis and trade-offs. Each returns HTML (empty when no run has anything for it); :func:`lead_figure` is
the first figure a run's section draws (what a result's ``plot()`` returns)."""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np

from ..errors import OnnxFaultError
from . import compare, figures
from .html import code, definitions, figure, label, number, paragraph, side_by_side, table, text
from .runs import Run, confusion_of, layer_scores

MAX_ROWS = 40  # layers in one score heatmap
MAX_GRID_LAYERS = 8  # conv layers drawn channel by channel
MAX_CHANNELS = 32  # channels per conv layer grid
MAX_SAMPLES = 10  # columns of the sample grid
MAX_NEURONS = 20  # rows of a synthesis run's neuron table
MAX_CLASSES = 20  # rows of an evaluation's per-class table: the worst classes when there are more
MAX_MATRIX = 30  # classes drawn as a confusion matrix; more are drawn as per-class accuracy bars


@contextmanager
def reading(run: Run):
    """Turn a malformed run (a key or type that is not what onnxfault writes) into one clear error."""
    try:
        yield
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as err:
        raise OnnxFaultError(f"{run.path} has unexpected content ({type(err).__name__}: {err}); "
                             f"write it again with `onnxfault {run.kind}`") from err


def what(run: Run) -> str:
    d = run.data
    if run.kind == "localize":
        return d["measure"]
    if run.kind == "evaluate":
        return "evaluate"
    if run.kind == "compare":
        return "compare " + ", ".join(d["measures"])
    if run.kind == "coverage":
        return "coverage " + ", ".join(d["coverage"])
    if run.kind == "retrain":
        return f"retrain ({d['params']['only']} weights)"
    if run.kind == "robustness":
        return "robustness"
    measure = d["params"].get("measure")
    return d["method"] + (f" ({measure})" if measure else "")


def title(run: Run) -> str:
    return f"{run.tag} · {what(run)} · {run.name}"


def _h(level: int, content: str, ident: str | None = None) -> str:
    attrs = f' id="{text(ident)}"' if ident else ""
    return f"<h{level}{attrs}>{text(content)}</h{level}>\n"


# ---- model card -------------------------------------------------------------------------------------
def model_card(runs: list[Run]) -> str:
    parts = [table("Runs on this page", ["run", "name", "kind", "measure / method", "model", "data", "device",
                                         "created"],
                   [[r.tag, r.name, r.kind, what(r), label(model_of(r), True),
                     label(r.data.get("data"), True), r.data.get("device", "–"),
                     _when(r.data.get("created"))] for r in runs],
                   "runs")]
    by_model: dict[str, list[Run]] = {}
    for run in runs:
        by_model.setdefault(str(model_of(run)), []).append(run)
    for path, members in by_model.items():
        parts.append(_h(3, f"Model {path}"))
        io = next((r.data["model_io"] for r in members if isinstance(r.data.get("model_io"), dict)), None)
        items = [("runs", ", ".join(r.tag for r in members))]
        if io:
            items += [("input", f"{io['input']['name']} ({' × '.join(str(d) for d in io['input']['shape'])})"),
                      ("output", f"{io['output']['name']} ({io['output']['classes']} classes)"),
                      ("opset", str(io["opset"]))]
        else:
            items.append(("inputs and outputs", "not recorded in these runs (written by an older onnxfault)"))
        parts.append(definitions(items))
        parts.append(_layers_analysed(members))
    parts.append(_data_table(runs))
    parts.append(_h(3, "Command lines"))
    parts.append(code([f"# {r.tag}\n{r.data.get('command') or 'not recorded (Python API or older onnxfault)'}"
                       for r in runs]))
    parts.append(_versions(runs))
    return "".join(parts)


def model_of(run: Run):
    """The model a run is about (a comparison's: both, as "A vs B")."""
    if run.kind == "compare":
        return f"{run.data.get('model_a')} vs {run.data.get('model_b')}"
    return run.data.get("model")


def _when(created: str | None) -> str:
    return created.replace("T", " ").replace("+00:00", " UTC") if created else "not recorded"


def _layers_analysed(members: list[Run]) -> str:
    rows: dict[str, list] = {}
    for run in members:
        with reading(run):
            if run.kind == "localize":
                for layer in run.data["layers"]:
                    rows.setdefault(layer["tensor"], [layer["tensor"], layer["op"], str(tuple(layer["shape"])),
                                                      number(layer["neurons"]), []])[4].append(run.tag)
            elif run.kind == "synthesize":
                for tensor in dict.fromkeys(n["tensor"] for n in run.data["neurons"]):
                    rows.setdefault(tensor, [tensor, "–", "–", number(None), []])[4].append(run.tag)
            elif run.kind == "coverage":
                for layer in run.data["layers"]:
                    rows.setdefault(layer["name"], [layer["name"], "–", "–", number(layer["neurons"]), []])[4].append(
                        run.tag)
    body = [[*row[:4], ", ".join(dict.fromkeys(row[4]))] for row in rows.values()]
    return table("Layers analysed (synthesis runs list the layers of the neurons they excite)",
                 ["tensor", "op", "shape per sample", "neurons", "runs"], body)


def _data_table(runs: list[Run]) -> str:
    rows = []
    for run in runs:
        d = run.data
        with reading(run):
            if run.kind == "localize":
                rows.append([run.tag, label(d["data"], True), number(d["samples"], "samples"),
                             number(d["failing"], "failing"), number(d["accuracy"], "accuracy", percent=True),
                             number(None)])
            elif run.kind == "evaluate":
                rows.append([run.tag, label(d["data"], True), number(d["samples"], "samples"),
                             number(d["samples"] - d["correct"], "failing"),
                             number(d["accuracy"], "accuracy", percent=True), number(None)])
            elif run.kind == "compare":  # failing: model A's and model B's misclassified samples
                rows.append([run.tag, label(d["data"], True), number(d["samples"], "samples"),
                             label(f"{d['failing']['a']}, {d['failing']['b']}"), number(None), number(None)])
            elif run.kind == "coverage":
                rows.append([run.tag, label(d["data"], True), number(d["samples"], "samples"), number(None),
                             number(None), number(None)])
            elif run.kind == "robustness":
                rows.append([run.tag, label(d["data"], True), number(None), number(None), number(None),
                             number(d["seeds"], "seeds")])
            elif run.kind == "retrain":  # the held-out data, after retraining
                after = d["after"]
                rows.append([run.tag, label(d["params"].get("heldout") or d["data"], True),
                             number(after["samples"], "samples"),
                             number(after["samples"] - sum(c["correct"] for c in after["per_class"]), "failing"),
                             number(after["accuracy"], "accuracy", percent=True), number(None)])
            else:
                rows.append([run.tag, label(d["data"], True), number(None), number(None), number(None),
                             number(d["seeds"]["count"], "seeds")])
    return _h(3, "Data") + table("Data per run: samples counted for the spectrum or the evaluation, or seeds "
                                 "drawn for synthesis",
                                 ["run", "data", "samples", "failing", "accuracy", "seeds"], rows, "data")


def _versions(runs: list[Run]) -> str:
    found = [r.data.get("versions") or {} for r in runs]
    packages = list(dict.fromkeys(p for v in found for p in v))
    if not packages:
        return paragraph("Package versions: not recorded in these runs.", "note")
    platforms = {r.data.get("platform") for r in runs if r.data.get("platform")}
    note = paragraph(f"Platform: {', '.join(sorted(platforms))}.", "note") if platforms else ""
    if all(v == found[0] for v in found):
        return _h(3, "Versions") + table("Versions (the same for every run)", ["package", "version"],
                                         [[p, label(found[0][p])] for p in packages], "versions") + note
    return _h(3, "Versions") + table("Versions per run", ["package", *[r.tag for r in runs]],
                                     [[p, *[label(v.get(p, "–")) for v in found]] for p in packages],
                                     "versions") + note


# ---- suspiciousness ---------------------------------------------------------------------------------
def suspiciousness(runs: list[Run]) -> str:
    located = [r for r in runs if r.kind == "localize"]
    if not located:
        return ""
    parts = [paragraph("A neuron's hit spectrum counts the samples on which it is active or not, and passing "
                       "(classified correctly, or as the target) or failing: as, af, ns, nf. A measure turns "
                       "the counts into a suspiciousness score; the top-k neurons are the most suspicious."),
             figure(figures.png(distribution_figure(located)),
                    "Bar chart of how many of the top-k suspicious neurons lie in each layer, per run and measure",
                    "Suspicious neurons per layer, a bar per run and measure (as DeepFault's Fig. 3).",
                    "distribution")]
    for run in located:
        with reading(run):
            parts.append(_localize_run(run))
    return "".join(parts)


def distribution_figure(located: list[Run]):
    """How many top-k neurons of each localize run lie in each layer (the section's first figure)."""
    layers = list(dict.fromkeys(l["tensor"] for r in located for l in r.data["layers"]))
    counts = {f"{r.tag} {r.data['measure']}": compare.neurons_per_layer(r.data["neurons"], layers) for r in located}
    return figures.layer_distribution_figure(layers, counts)


def _position(layer: dict, index: int, granularity: str) -> str:
    shape = layer["shape"]
    if granularity != "element" or len(shape) < 2:
        return "–"
    return str(tuple(int(i) for i in np.unravel_index(index, shape)))


def _localize_run(run: Run) -> str:
    d = run.data
    failing = {"all": "misclassified", "class": f"of class {d.get('class')} misclassified",
               "target": f"predicted as target {d.get('target')}"}.get(d.get("mode"), "failing")
    layers = {l["tensor"]: l for l in d["layers"]}
    extra = [k for k in d["neurons"][0] if k not in ("rank", "tensor", "index", "score", "as", "af", "ns", "nf")] \
        if d["neurons"] else []
    element = d.get("granularity") == "element"
    rows = [[number(n["rank"], "rank"), label(n["tensor"]), number(n["index"], "index"),
             *([label(_position(layers[n["tensor"]], n["index"], "element"))] if element else []),
             number(n["score"], "score", digits=6), *(number(n[c], c) for c in ("as", "af", "ns", "nf")),
             *(number(n[k], k, digits=6) for k in extra)] for n in d["neurons"]]
    parts = [_h(3, title(run), f"localize-{run.tag}"),
             paragraph(f"{d['samples']} samples, {d['failing']} {failing} (accuracy {100 * d['accuracy']:.2f} %); "
                       f"{sum(l['neurons'] for l in d['layers'])} neurons in {len(d['layers'])} layers, "
                       f"{d.get('granularity', 'channel')} granularity, active when value > {d.get('threshold', 0)}."),
             table(f"Top {len(rows)} neurons by {d['measure']} ({run.tag})",
                   ["rank", "tensor", "index", *(["position"] if element else []), "score", "as", "af", "ns", "nf",
                    *extra], rows, f"topk-{run.tag}")]
    if d["neurons"]:
        af, as_ = compare.active_fractions(d["neurons"])
        names = [f"{n['rank']}. {figures.short(n['tensor'], 20)}[{n['index']}]" for n in d["neurons"]]
        parts.append(figure(figures.spectrum_bars(names, af, as_),
                            f"Bar chart of the spectrum of the top {len(names)} neurons of {run.tag}",
                            "Spectrum of the top neurons: the share of failing samples that activate each one "
                            "(af / F) beside the share of passing samples (as / P).", f"spectrum-{run.tag}"))
    parts.append(_heatmaps(run))
    return "".join(parts)


def _heatmaps(run: Run) -> str:
    d = run.data
    every = layer_scores(run)
    if every is None and any("summary" in l for l in d["layers"]):
        return paragraph("This file summarises each layer's scores and names no npz holding every score "
                         "(written by the Python API without one): write it with `onnxfault localize --json`, "
                         "which writes FILE.spectra.npz beside it, for the heatmaps.", "note")
    if every is None:
        return paragraph("Per-neuron scores are not in this file (written by an older onnxfault): "
                         "run localize again for the heatmaps.", "note")
    tops: dict[str, list[int]] = {}
    for n in d["neurons"]:
        tops.setdefault(n["tensor"], []).append(int(n["index"]))
    rows, grids = [], []
    for layer, scores in zip(d["layers"], every):
        axis = layer.get("channel_axis")
        if d.get("granularity") == "element" and axis is not None and len(layer["shape"]) == 3:
            grids.append((layer, scores, axis))
        else:
            rows.append((layer["tensor"], scores, tops.get(layer["tensor"], [])))
    parts = []
    if rows:
        shown = rows[:MAX_ROWS]
        parts.append(figure(figures.score_rows(shown, d["measure"]),
                            f"Heatmap of {d['measure']} scores, a row per layer, for {run.tag}",
                            f"{d['measure']} score of every neuron, a row per layer (the neuron count in "
                            "brackets); ▼ marks the top-k neurons."
                            + (f" First {MAX_ROWS} of {len(rows)} layers." if len(rows) > MAX_ROWS else ""),
                            f"heatmap-{run.tag}"))
    for layer, scores, axis in grids[:MAX_GRID_LAYERS]:
        parts.append(_channel_grid(run, layer, scores, axis, tops.get(layer["tensor"], [])))
    if len(grids) > MAX_GRID_LAYERS:
        parts.append(paragraph(f"Channel grids of the first {MAX_GRID_LAYERS} of {len(grids)} conv layers shown.",
                               "note"))
    return "".join(parts)


def _channel_grid(run: Run, layer: dict, scores: np.ndarray, axis: int, top: list[int]) -> str:
    maps, marks = compare.channel_maps(scores, layer["shape"], axis, top)
    chosen = compare.channels_to_show(maps, marks, MAX_CHANNELS)
    measure = run.data["measure"]
    low, high = float(scores.min()), float(scores.max())
    caption = (f"{measure} score per element of {layer['tensor']}, a grid per channel; circles mark "
               "top-k neurons." + (f" {len(chosen)} of {len(maps)} channels: those holding top-k neurons, "
                                   "then the highest-scoring." if len(chosen) < len(maps) else ""))
    return figure(figures.channel_grids(maps, chosen, marks, measure, low, high),
                  f"Per-channel heatmaps of {layer['tensor']} for {run.tag}", caption,
                  f"grid-{run.tag}-{layer['tensor']}")


# ---- synthesis --------------------------------------------------------------------------------------
def synthesis(runs: list[Run]) -> str:
    made = [r for r in runs if r.kind == "synthesize"]
    if not made:
        return ""
    parts = []
    if len(made) > 1:
        parts.append(_comparison(made))
    for run in made:
        with reading(run):
            parts.append(_synthesis_run(run))
    return "".join(parts)


def _metric_columns(runs: list[Run], metrics) -> list:
    return [m for m in metrics if any(compare.lookup(r.data, m[0]) is not None for r in runs)]


def _comparison(runs: list[Run]) -> str:
    columns = _metric_columns(runs, compare.METRICS)
    flags = {path: compare.best_flags([compare.lookup(r.data, path) for r in runs], better)
             for path, _, better, _ in columns}
    rows = [[f"{r.tag} {r.name}", what(r),
             *(number(compare.lookup(r.data, path), ".".join(path), percent, best=flags[path][i])
               for path, _, _, percent in columns)] for i, r in enumerate(runs)]
    return (_h(3, "Comparison", "comparison")
            + table("Method × metric; ★ marks the best value of each metric (lower accuracy, distances, "
                    "seconds and memory; higher rates, loss and activation increase)",
                    ["run", "method", *(name for _, name, _, _ in columns)], rows, "compare"))


def _settings(params: dict) -> str:
    shown = [f"{k} {v}" for k, v in params.items() if v is not None and k != "neurons_file"]
    return " · ".join(shown)


def _synthesis_run(run: Run) -> str:
    d = run.data
    parts = [_h(3, title(run), f"synthesize-{run.tag}"),
             paragraph(f"{d['seeds']['count']} seeds; settings: {_settings(d['params'])}.")]
    if run.arrays is not None:
        parts.append(_samples(run))
    else:
        parts.append(paragraph("inputs.npz is missing or incomplete: no sample grid.", "note"))
    if d.get("texts"):
        parts.append(_texts(run))
    metrics = _metric_columns([run], compare.METRICS + compare.method_metrics())
    rows = [[name, number(compare.lookup(d, path), ".".join(path), percent)] for path, name, _, percent in metrics]
    metrics_table = table(f"Metrics of {run.tag}: rates over the seeds, distances from each seed to its input",
                          ["metric", "value"], rows, f"metrics-{run.tag}")
    neurons = d["neurons"][:MAX_NEURONS]
    neurons_table = table(f"Neurons {run.tag} excites" + (f" (first {MAX_NEURONS} of {len(d['neurons'])})"
                                                          if len(d["neurons"]) > MAX_NEURONS else ""),
                          ["rank", "tensor", "index", "score"],
                          [[number(n["rank"], "rank"), label(n["tensor"]), number(n["index"], "index"),
                            number(n["score"], "score", digits=6)] for n in neurons],
                          f"neurons-{run.tag}") if neurons else ""
    parts.append(side_by_side(metrics_table, neurons_table))
    return "".join(parts)


def _samples(run: Run) -> str:
    drawn = samples_figure(run)
    if drawn is None:
        return paragraph("No seeds in this run.", "note")
    grid, shown, seeds = drawn
    target = run.data["params"].get("target")
    first = f"{shown} of {seeds} seeds, those that now " + ("reach the target" if target is not None
                                                            else "are misclassified") + " first. "
    if (run.data.get("input_layout") or {}).get("model") == "wave":
        return figure(figures.png(grid, tight=True),
                      f"Waveforms of {shown} seeds of {run.tag}: originals, synthesized inputs and their difference",
                      first + "Per seed: the original waveform (grey) under the synthesized one (blue), titled with "
                      "label y and predictions p before → after (bold red when it changed); the change (on its own scale); then the "
                      "spectrograms (dB) of the original, the synthesized waveform and the change.",
                      f"samples-{run.tag}")
    return figure(figures.png(grid, tight=True),
                  f"Grid of {shown} seeds of {run.tag}: originals, synthesized inputs and their difference",
                  first + "Top: original with label y and prediction p; middle: synthesized input and its "
                  "prediction (bold red when it changed); bottom: the change ×10 (white: none, red: up, blue: down).",
                  f"samples-{run.tag}")


def _texts(run: Run) -> str:
    """A text model's seeds as the tokenizer decodes them, before and after (the first :data:`MAX_SAMPLES`)."""
    d = run.data
    shown = d["texts"][:MAX_SAMPLES]
    rows = []
    for i, pair in enumerate(shown):
        row = [number(d["seeds"]["indices"][i], "seed")]
        if run.arrays is not None:
            a = run.arrays
            row += [f"y={a['labels'][i]} p={a['predictions_before'][i]} → {a['predictions_after'][i]}"]
        rows.append([*row, pair["before"], pair["after"]])
    columns = ["seed", *(["label, prediction"] if run.arrays is not None else []), "text before", "text after"]
    more = f" (first {MAX_SAMPLES} of {len(d['texts'])})" if len(d["texts"]) > MAX_SAMPLES else ""
    return table(f"Texts of {run.tag}{more}: the seeds and the synthesized inputs as the tokenizer decodes them "
                 "(special tokens left out)", columns, rows, f"texts-{run.tag}")


def samples_figure(run: Run):
    """The sample grid of a synthesis run with its arrays, with the seeds it shows and the run's seeds; None
    when the run has no seeds."""
    from .images import as_images

    d, a = run.data, run.arrays
    layout = d.get("input_layout") or {}
    model_layout = layout.get("model", "nchw" if a["original"].ndim == 4 else "flat")
    sample_shape = tuple(layout.get("sample_shape") or _square(a["original"]))
    target = d["params"].get("target")
    hit = a["predictions_after"] == target if target is not None else a["predictions_after"] != a["labels"]
    order = np.concatenate([np.flatnonzero(hit), np.flatnonzero(~hit)])[:MAX_SAMPLES]
    if len(order) == 0:
        return None
    captions = [(f"y={a['labels'][i]} p={a['predictions_before'][i]}", f"p={a['predictions_after'][i]}",
                 bool(a["predictions_after"][i] != a["predictions_before"][i])) for i in order]
    if model_layout == "wave":  # sound: waveforms and spectrograms
        order = order[:figures.WAVE_COLUMNS]
        fig = figures.waveform_figure(a["original"][order], a["synthesized"][order], captions[:len(order)],
                                      layout.get("sample_rate"))
        return fig, len(order), len(hit)
    original = as_images(a["original"][order], model_layout, sample_shape)
    synthesized = as_images(a["synthesized"][order], model_layout, sample_shape)
    clip = tuple(d["params"].get("clip") or (float(a["original"].min()), float(a["original"].max())))
    return figures.sample_grid_figure(original, synthesized, captions, clip), len(order), len(hit)


def _square(x: np.ndarray) -> tuple[int, ...]:
    side = int(round(np.sqrt(x.shape[1]))) if x.ndim == 2 else 0
    return (1, side, side) if x.ndim == 2 and side * side == x.shape[1] else tuple(x.shape[1:])


# ---- trade-offs -------------------------------------------------------------------------------------
def trade_offs(runs: list[Run]) -> str:
    series = compare.trade_off_series([(r.tag, r.data) for r in runs if r.kind == "synthesize"])
    if not series:
        return ""
    parts = [paragraph("Runs that share every setting but one (k, iterations, ε, distance, step or cut) form a "
                       "series: how effective the inputs are against the time it took.")]
    for parameter in dict.fromkeys(s.parameter for s in series):
        group = [s for s in series if s.parameter == parameter]
        measures = {s.measure for s in group}
        ylabel = measures.pop() if len(measures) == 1 else "success or target rate"
        parts.append(figure(figures.trade_off(group, parameter, ylabel),
                            f"Line plot of {ylabel} against seconds as {parameter} varies",
                            f"Effectiveness ({ylabel}) against seconds as {parameter} varies; each point is a run.",
                            f"tradeoff-{parameter}"))
        rows = [[f"{s.label} {tag}", number(value, parameter), number(rate, "effectiveness", percent=True),
                 number(seconds, "seconds")]
                for s in group for tag, value, rate, seconds in zip(s.tags, s.values, s.effectiveness, s.seconds)]
        parts.append(table(f"The points of the plot as {parameter} varies", ["series and run", parameter, ylabel,
                                                                              "seconds"], rows,
                           f"tradeoff-table-{parameter}"))
    return "".join(parts)


# ---- model comparison -------------------------------------------------------------------------------
def comparison(runs: list[Run]) -> str:
    """The model comparisons: each one's summary, figure and tables."""
    parts = []
    for run in (r for r in runs if r.kind == "compare"):
        with reading(run):
            parts.append(_compare_run(run))
    return "".join(parts)


def _compare_run(run: Run) -> str:
    from ..comparison import CompareResult, Share, _rows, summary_line

    result = CompareResult.from_json(run.data)
    tables = [table(f"{caption} ({run.tag})", columns,
                    [[number(v, percent=isinstance(v, Share)) if i else label(v) for i, v in enumerate(row)]
                     for row in rows])
              for caption, (columns, rows) in _rows(result).items()]
    return "".join([_h(3, title(run), f"compare-{run.tag}"), paragraph(summary_line(result)),
                    figure(figures.png(comparison_figure(run)), f"Agreement of the two models in {run.tag}",
                           "Left: per paired layer, the share of neurons whose four counts (as, af, ns, nf) are "
                           "identical. Right: per measure, the share of model A's top-k neurons also in model B's.",
                           f"compare-figure-{run.tag}"),
                    *tables])


def comparison_figure(run: Run):
    """A comparison run's agreement per paired layer and per measure."""
    d = run.data
    layers = [(f"{p['tensor_a']}", p["identical"] / p["neurons"] if p["neurons"] else 1.0) for p in d["layers"]]
    return figures.comparison_figure(layers, [(m, a["top_k_shared"]) for m, a in d["measures"].items()])


# ---- evaluation -------------------------------------------------------------------------------------
def evaluation(runs: list[Run]) -> str:
    evaluated = [r for r in runs if r.kind == "evaluate"]
    parts = []
    for run in evaluated:
        with reading(run):
            parts.append(_evaluate_run(run))
    return "".join(parts)


def _evaluate_run(run: Run) -> str:
    d = run.data
    confusion = confusion_of(d)
    rows = _per_class(confusion)
    shown = rows if len(rows) <= MAX_CLASSES else sorted(
        [r for r in rows if r[1]], key=lambda r: (r[2] / r[1], r[0]))[:MAX_CLASSES]
    matrix = len(confusion) <= MAX_MATRIX
    return "".join([
        _h(3, title(run), f"evaluate-{run.tag}"),
        paragraph(f"{d['samples']} samples, {d['correct']} classified correctly (accuracy "
                  f"{100 * d['accuracy']:.2f} %), {d['classes']} classes."),
        figure(figures.png(evaluation_figure(run)),
               f"{'Confusion matrix' if matrix else 'Bar chart of the accuracy per class'} of {run.tag}",
               "Confusion matrix: each true class's samples (a row) by predicted class, shaded by their share of "
               "the row" + (", with the counts" if len(confusion) <= 12 else "") + "." if matrix
               else "Accuracy per class (no bar: no samples of that class).", f"confusion-{run.tag}"),
        table(f"Accuracy per class ({run.tag})" if len(shown) == len(rows)
              else f"The {len(shown)} worst of {len(rows)} classes ({run.tag})",
              ["class", "samples", "correct", "accuracy"],
              [[number(c, "class"), number(n, "samples"), number(k, "correct"),
                number(k / n if n else None, "accuracy", percent=True)] for c, n, k in shown],
              f"per-class-{run.tag}")])


def _per_class(confusion: np.ndarray) -> list[tuple[int, int, int]]:
    """(class, samples, correct) per class."""
    return [(c, int(row.sum()), int(row[c])) for c, row in enumerate(confusion)]


def evaluation_figure(run: Run):
    """An evaluate run's confusion matrix, or above :data:`MAX_MATRIX` classes its accuracy per class."""
    confusion = confusion_of(run.data)
    if len(confusion) <= MAX_MATRIX:
        return figures.confusion_figure(confusion)
    samples = confusion.sum(axis=1)
    return figures.class_accuracy_figure(np.divide(np.diag(confusion), samples, out=np.full(len(samples), np.nan),
                                                   where=samples > 0))


# ---- retraining ---------------------------------------------------------------------------------------
def retraining(runs: list[Run]) -> str:
    parts = []
    for run in (r for r in runs if r.kind == "retrain"):
        with reading(run):
            parts.append(_retrain_run(run))
    return "".join(parts)


def _retrain_run(run: Run) -> str:
    d, p = run.data, run.data["params"]
    before, after = d["before"], d["after"]
    rows = [["accuracy", number(before["accuracy"], "accuracy", percent=True),
             number(after["accuracy"], "accuracy", percent=True)]]
    if before.get("attack_success_rate") is not None:
        rows.append([f"PGD success (L∞ {p['attack_distance']:g})",
                     number(before["attack_success_rate"], "attack_success_rate", percent=True),
                     number(after["attack_success_rate"], "attack_success_rate", percent=True)])
    for old, new in zip(before["per_class"], after["per_class"]):
        if old["samples"]:
            rows.append([f"class {old['class']} ({old['samples']} samples)",
                         number(old["correct"] / old["samples"], "accuracy", percent=True),
                         number(new["correct"] / new["samples"], "accuracy", percent=True)])
    changes = [[label(c["tensor"]), label(str(tuple(c["shape"]))), number(c["trainable"], "trainable"),
                number(c["changed"], "changed"), number(c["max_abs"], "max_abs"), number(c["l2"], "l2")]
               for c in d["changes"]]
    about = (f"{d['samples']['benign']} benign samples of {d['data']} and {d['samples']['synthesized']} synthesized "
             f"inputs of {', '.join(d['inputs'])}, labelled as their seeds; {p['epochs']} epochs, batches of "
             f"{p['batch_size']}, Adam {p['lr']:g}, seed {p['seed']}; {p['only']} weights"
             + ("" if p.get("adversarial") in (None, "none") else f", with {p['adversarial'].upper()} adversarial "
                                                                   "training") + ".")
    return "".join([_h(3, title(run), f"retrain-{run.tag}"), paragraph(about),
                    table(f"Before and after retraining ({run.tag})", ["measure", "before", "after"], rows,
                          f"retrain-{run.tag}-table"),
                    table(f"Weights changed ({run.tag})", ["tensor", "shape", "may change", "changed", "largest |Δ|",
                                                            "‖Δ‖₂"], changes, f"retrain-{run.tag}-changes")])


def robustness(runs: list[Run]) -> str:
    parts = []
    for run in (r for r in runs if r.kind == "robustness"):
        with reading(run):
            d, p = run.data, run.data["params"]
            rows = [[f"PGD success (L∞ {p['attack_distance']:g}, {d['seeds']} seeds)",
                     number(d["attack_success_rate"], "attack_success_rate", percent=True)]]
            if d["clever"]:
                rows.append([f"CLEVER mean (L{p['norm']}, N_b {p['batches']}, N_s {p['batch_size']}, radius "
                             f"{p['radius']:g}, {len(d['clever'])} seeds)", number(float(np.mean(d["clever"])),
                                                                                    "clever_mean")])
                rows.append(["CLEVER least", number(float(min(d["clever"])), "clever_min")])
            if d.get("fid") is not None:
                rows.append([f"FID of {d.get('inputs')} against its seeds (features {p['features']})",
                             number(d["fid"], "fid")])
            parts.append(_h(3, title(run), f"robustness-{run.tag}")
                         + table(f"Robustness ({run.tag})", ["measure", "value"], rows, f"robustness-{run.tag}-table"))
    return "".join(parts)


# ---- coverage -----------------------------------------------------------------------------------------
COVERAGE_NAMES = {"nc": "NC", "kmnc": "KMNC", "nbc": "NBC", "snac": "SNAC", "tknc": "TKNC"}


def coverage(runs: list[Run]) -> str:
    covered = [r for r in runs if r.kind == "coverage"]
    parts = []
    for run in covered:
        with reading(run):
            parts.append(_coverage_run(run))
    return "".join(parts)


def _share(pair) -> float | None:
    return pair[0] / pair[1] if pair[1] else None


def _coverage_run(run: Run) -> str:
    d = run.data
    criteria, p = list(d["coverage"]), d["params"]
    extra = d.get("coverage_with_inputs")
    settings = ", ".join(f"{k} {v}" for k, v in (("threshold", p.get("threshold")), ("top", p.get("top")),
                                                  ("sections", p.get("sections"))) if v is not None)
    rows = [[COVERAGE_NAMES.get(c, c), number(_share(d["coverage"][c]), "coverage", percent=True),
             label(f"{d['coverage'][c][0]:,} / {d['coverage'][c][1]:,}"),
             *([number(_share(extra[c]), "coverage", percent=True)] if extra else [])] for c in criteria]
    heads = ["criterion", "coverage", "covered / total", *(["with the inputs"] if extra else [])]
    about = (f"{d['samples']} samples over {sum(l['neurons'] for l in d['layers'])} neurons in {len(d['layers'])} "
             f"layers ({settings}); neuron boundaries from {d.get('reference') or 'no reference data'}"
             + (f"; {d.get('input_samples', 0)} inputs from {d.get('inputs')} added." if extra else "."))
    return "".join([
        _h(3, title(run), f"coverage-{run.tag}"), paragraph(about),
        figure(figures.png(coverage_figure(run)), f"Coverage per criterion of {run.tag}",
               "Per layer and for the whole net" + (", also with the inputs added" if extra else "") + ".",
               f"coverage-figure-{run.tag}"),
        table(f"Coverage ({run.tag})", heads, rows, f"coverage-{run.tag}-table")])


def coverage_figure(run: Run):
    """A coverage run's bars: per criterion, per layer, for the whole net (and with the inputs)."""
    d = run.data
    criteria = list(d["coverage"])
    share = lambda found: [_share(found[c]) or 0.0 for c in criteria]  # noqa: E731
    extra = d.get("coverage_with_inputs")
    return figures.coverage_figure([COVERAGE_NAMES.get(c, c) for c in criteria],
                                   [(l["name"], share(l["coverage"])) for l in d["layers"]], share(d["coverage"]),
                                   share(extra) if extra else None)


def lead_figure(run: Run):
    """The first figure of ``run``'s section: suspicious neurons per layer (localize), the sample grid
    (synthesize), the confusion matrix or per-class accuracy (evaluate), the agreement per layer and measure
    (compare)."""
    with reading(run):
        if run.kind == "localize":
            return distribution_figure([run])
        if run.kind == "evaluate":
            return evaluation_figure(run)
        if run.kind == "compare":
            return comparison_figure(run)
        if run.kind == "coverage":
            return coverage_figure(run)
        drawn = samples_figure(run) if run.arrays is not None else None
    if drawn is None:
        raise OnnxFaultError(f"{run.path} has no seeds and inputs to draw; its report shows no sample grid")
    return drawn[0]
