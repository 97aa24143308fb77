"""Synthesis: turn suspicious neurons into new inputs, and measure them (one schema for every method).

Methods (one module each, one registry): ``deepfault``, ``hs`` (HS-FGSM on a sub-model), the baselines
``fgsm`` and ``pgd``, ``deepsensor`` (particle swarms on the excitable, high-Shapley neurons) and ``patch``
(AIGENT: weight patches by linear programs, translated into an input change). ``--measure random``
gives a uniform random neuron ranking (DeepFault's Table 3 baseline is in examples/deepfault_table3.py).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..data import DataLike, DataOptions, Dataset, as_data
from ..distributed.options import holds_ray
from ..errors import OnnxFaultError, check_finite, read_json
from ..localization import SuspiciousNeuron, localize, samples_for
from ..model import Model, as_model
from ..model_forms import ModelLike
from ..peak_memory import peak_rss_mb, peak_rss_reset
from ..provenance import stamp
from ..shapley import ShapleyOptions
from ..spectrum import Outcome, validate_outcome
from .base import Problem
from .methods import METHODS, get_method
from .metrics import measure
from .running import run_in_chunks, run_on_ray
from .seeds import choose_seeds

__all__ = ["METHODS", "SynthesisResult", "synthesize", "read_neurons"]


@dataclass
class SynthesisResult:
    report: dict
    arrays: dict[str, np.ndarray]  # original, synthesized, labels, predictions_before, predictions_after
    clip: tuple[float, float]
    model_layout: str
    sample_shape: tuple[int, ...]
    warnings: list[str] = field(default_factory=list)

    def save(self, out: str | Path, report: bool = False) -> Path:
        """Write the ``--out`` folder as ``synthesize --out`` does: ``report.json``, ``inputs.npz``,
        ``samples.png`` (and ``report.html`` when ``report``), replacing an earlier run's folder as a whole."""
        from .output import save_result

        save_result(self, out, report)
        return Path(out)

    def plot(self):
        """The report's figure of this result: the sample grid (originals, synthesized inputs, change ×10)."""
        from ..report import result_figure

        return result_figure(self)

    def _report_run(self):
        from ..report.results import memory_run

        return memory_run("synthesize", self.report, self.arrays)

    def _repr_html_(self) -> str:
        from ..report import result_html

        return result_html(self)

    def __rich__(self):
        from ..display import synthesis_view

        return synthesis_view(self.report)

    def __repr__(self) -> str:
        r = self.report
        return (f"<SynthesisResult {r['method']}: {r['seeds']['count']} seeds, accuracy "
                f"{100 * r['accuracy_before']:.1f} % → {100 * r['accuracy_after']:.1f} %, success "
                f"{100 * r['success_rate']:.1f} %, L∞ mean {r['distance']['linf']['mean']:.4g}>")


_NEURONS_HINT = "give a `onnxfault localize --json` file"


def read_neurons(path: str | Path, model: Model | None = None) -> tuple[list[SuspiciousNeuron], str, str]:
    """Neurons, granularity and layers spec from a ``localize --json`` file; with ``model``, every neuron
    must name one of its layers and an index inside it."""
    data = read_json(path, _NEURONS_HINT)
    try:
        neurons = [SuspiciousNeuron(n["rank"], n["tensor"], n["index"], float(n["score"]),
                                    n["as"], n["af"], n["ns"], n["nf"]) for n in data["neurons"]]
        granularity = data.get("granularity", "channel")
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise OnnxFaultError(f"cannot read neurons from {path} ({type(err).__name__}: {err}); {_NEURONS_HINT}") from err
    problem = _neurons_problem(neurons, granularity)
    if problem:
        raise OnnxFaultError(f"cannot read neurons from {path}: {problem}; {_NEURONS_HINT}")
    if model is not None:
        check_neurons(neurons, model, granularity, path)
    return neurons, granularity, ",".join(dict.fromkeys(n.tensor for n in neurons))


def _neurons_problem(neurons: list[SuspiciousNeuron], granularity) -> str | None:
    if granularity not in ("channel", "element"):
        return f"granularity {granularity!r} is neither channel nor element"
    if not neurons:
        return "it lists no neurons"
    for n in neurons:
        if not isinstance(n.tensor, str) or not n.tensor:
            return f"neuron {n.rank!r} has no tensor name"
        if isinstance(n.index, bool) or not isinstance(n.index, int) or n.index < 0:
            return f"neuron index {n.index!r} of {n.tensor} is not a whole number ≥ 0"
    return None


def check_neurons(neurons: list[SuspiciousNeuron], model: Model, granularity: str, path) -> None:
    """Every neuron names a layer of ``model`` and an index below that layer's neuron count."""
    try:
        layers = {layer.tensor: layer for layer in model.select_layers(list(dict.fromkeys(n.tensor for n in neurons)))}
    except OnnxFaultError as err:
        raise OnnxFaultError(f"--neurons {path} does not fit the model: {err}") from err
    for n in neurons:
        size = layers[n.tensor].neurons(granularity)
        if n.index >= size:
            raise OnnxFaultError(f"--neurons {path}: neuron index {n.index} of {n.tensor} is out of range (the layer "
                                 f"has {size} neurons at {granularity} granularity); was the file written for "
                                 "another model?")


def excitable(neurons: list[SuspiciousNeuron], lambda_: float) -> list[SuspiciousNeuron]:
    """The excitable neurons (the paper's Definition 3): normalised Shapley value ψ / max ψ above λ ≥ 0, so
    a neuron whose value is 0 or negative never is; re-ranked from 1."""
    kept = [n for n in neurons if n.score > lambda_]
    if not kept:
        raise OnnxFaultError(f"no neuron has a normalised Shapley value above --lambda {lambda_}; lower it")
    return [replace(n, rank=r + 1) for r, n in enumerate(kept)]


def check_options(options: dict) -> dict:
    """Validate method settings (one clear error each)."""
    if options.get("population", 2) < 2:
        raise OnnxFaultError(f"--population must be at least 2 (got {options['population']})")
    if options.get("objective", "pixels") not in ("pixels", "l1"):
        raise OnnxFaultError(f"--objective must be pixels or l1 (got {options['objective']})")
    if options.get("max_pixels") is not None and options["max_pixels"] < 1:
        raise OnnxFaultError(f"--max-pixels must be at least 1 (got {options['max_pixels']})")
    for key, allowed in (("relaxation", ("region", "paper")), ("phases", ("free", "seed")),
                         ("weight_change", ("total", "max"))):
        if options.get(key, allowed[0]) not in allowed:
            raise OnnxFaultError(f"--{key.replace('_', '-')} must be {' or '.join(allowed)} (got {options[key]})")
    if options.get("alpha") is not None and not options["alpha"] > 0:
        raise OnnxFaultError(f"--alpha must be a positive number (got {options['alpha']})")
    if options.get("gradient", "normalized") not in ("normalized", "raw"):
        raise OnnxFaultError(f"--gradient must be normalized or raw (got {options['gradient']})")
    if options.get("step_rule", "gradient") not in ("gradient", "sign"):
        raise OnnxFaultError(f"--step-rule must be gradient or sign (got {options['step_rule']})")
    check_finite(time_limit=options.get("time_limit"), alpha=options.get("alpha"))
    if options.get("time_limit", 1) <= 0:
        raise OnnxFaultError(f"--time-limit must be > 0 seconds (got {options['time_limit']})")
    if not 0 < options.get("stop_fitness", 1.0) <= 1:
        raise OnnxFaultError(f"--stop-fitness must be in (0, 1] (got {options['stop_fitness']})")
    if "max_flips" in options:  # hotflip
        from .hotflip import check

        check(options)
    if "inertia" in options:  # deepsensor: "start,end" or a pair → (start, end)
        from .deepsensor import parse_inertia

        options = {**options, "inertia": parse_inertia(options["inertia"])}
    return options


def method_params(chosen, *, step, iterations, epsilon, distance) -> dict:
    """``step``, ``distance``, ``iterations`` and ``epsilon``: the method's defaults, overridden by those given
    (``distance`` "default" keeps the method's; None is no L∞ bound)."""
    params = {**chosen.defaults, **{k_: v for k_, v in (("step", step), ("iterations", iterations),
                                                          ("epsilon", epsilon)) if v is not None}}
    params["distance"] = chosen.defaults["distance"] if distance == "default" else distance
    if params["distance"] is not None and params["distance"] <= 0:
        raise OnnxFaultError(f"--distance must be > 0 (got {params['distance']}); use none for no bound")
    if params["iterations"] < 1:
        raise OnnxFaultError(f"--iterations must be at least 1 (got {params['iterations']})")
    return params


@holds_ray
def synthesize(model: ModelLike, data: DataLike, *, method: str, cls: int | None = None,
               target: int | None = None, samples: int = 10, seed: int = 0, measure_name: str | None = None,
               k: int = 10, layers: str = "auto", granularity: str = "channel", neurons_file: str | Path | None = None,
               step: float | None = None, distance: float | None | str = "default", iterations: int | None = None,
               epsilon: float | None = None, cut: str | None = None, clip_min: float | None = None,
               clip_max: float | None = None, device: str = "auto", data_options: DataOptions | None = None,
               on_batch=None, shapley: ShapleyOptions | None = None, options: dict | None = None,
               output: str | None = None, allow_nonfinite: bool = False, ray=None,
               example_input=None, start: str | None = None, token_activity: str | None = None) -> SynthesisResult:
    """Select suspicious neurons (as ``localize``), draw seeds, run ``method``, and measure the result. Methods
    that use no neurons (fgsm, pgd, patch) skip the spectrum: their report lists no neurons (k 0, no measure,
    ``activation_increase`` None), and ``neurons_file`` and ``measure_name`` are ignored with a note.

    ``distance`` "default" takes the method's default; None means no L∞ bound. ``measure_name`` None is
    ochiai, or shapley for deepsensor, whose neurons are all the excitable ones (normalised Shapley value
    > ``shapley.lambda_``; -k is ignored). ``options`` holds method settings: deepsensor's ``population``,
    ``stop_fitness`` and ``inertia`` (start, end); patch's ``objective`` (pixels|l1), ``max_pixels``,
    ``time_limit``, ``hold_inactive``, ``relaxation`` (region|paper), ``phases`` (free|seed),
    ``weight_change`` (total|max) and ``alpha``.
    ``output`` names the class-score output of a model with several. NaN or infinite class scores are an
    error unless ``allow_nonfinite``. ``ray`` (a :class:`~onnxfault.distributed.RayOptions`) runs the
    spectrum and the method's chunks of seeds on Ray workers (the same inputs to the bit).
    ``model`` is any form :func:`~onnxfault.as_model` takes (a torch module with ``example_input``).
    A text model (token ids, :attr:`Model.token_input`) is perturbed in its token-embedding space, from the
    embedding lookup or from ``start`` (``--from``), and the result projected onto real token ids (see
    :mod:`onnxfault.synthesis.embedding`): methods that declare ``embeddings`` run there; ``token_activity`` is
    the token rule its neurons are ranked by (as in :func:`~onnxfault.localize`).
    ``data`` is a path, a pair ``(x, y)`` of numpy arrays or torch tensors, an iterable of ``(x, y)`` batches
    or a :class:`Dataset` (see :func:`~onnxfault.data.as_dataset`). An iterable is read once for the seeds
    (the inputs of the correctly classified samples of the wanted classes are kept, as read, until the seeds
    are drawn) and once more before that for the spectrum of a method that uses neurons without
    ``neurons_file``: a list, a DataLoader or a ``tf.data.Dataset`` can be read twice, an iterator cannot.
    Returns a :class:`SynthesisResult`; ``write_run`` in ``synthesis.output`` writes it."""
    chosen = get_method(method)
    shapley = (shapley or ShapleyOptions()).check()
    check_finite(step=step, epsilon=epsilon, clip_min=clip_min, clip_max=clip_max, distance=distance,
                 noise=shapley.noise, lambda_=shapley.lambda_)
    if clip_min is not None and clip_max is not None and not clip_min < clip_max:
        raise OnnxFaultError(f"--clip-min {clip_min} must be below --clip-max {clip_max}")
    options = check_options({**chosen.options, **(options or {})})
    if chosen.name == "deepsensor" and measure_name not in (None, "shapley") and neurons_file is None:
        raise OnnxFaultError(f"deepsensor chooses neurons by Shapley value, not {measure_name}; "
                             "drop --measure or use --measure shapley")
    ignored = [flag for flag, given in (("--neurons", neurons_file), ("--measure", measure_name),
                                        ("--token-activity", token_activity)) if given is not None]
    measure_name = measure_name or ("shapley" if chosen.name == "deepsensor" else "ochiai")
    params = method_params(chosen, step=step, iterations=iterations, epsilon=epsilon, distance=distance)
    model = as_model(model, output, example_input)
    validate_outcome(Outcome(cls=cls, target=target), model.num_classes)  # both in range, as --neurons skips localize
    space = _embedding_space(chosen, model, start)
    data = as_data(data, data_options)  # once: the passes below share an iterable's reading
    dataset: Dataset = samples_for(model, data, data_options, None, target)
    notes: list[str] = []
    if not chosen.uses_neurons:  # no spectrum: the report says so (no neurons, k 0, no measure, layers or file)
        notes = [f"{chosen.name} uses no suspicious neurons; {' and '.join(ignored)} ignored"] if ignored else []
        neurons, granularity, layers, measure_name, neurons_file = [], None, None, None, None
    elif neurons_file is not None:
        neurons, granularity, layers = read_neurons(neurons_file, model)
    else:
        def rank(spec: str) -> list[SuspiciousNeuron]:
            every = chosen.name == "deepsensor"  # all neurons, filtered by λ below
            return localize(model, samples_for(model, data, data_options, cls, target), layers=spec,
                            measure=measure_name, k=sum(l.neurons(granularity) for l in model.select_layers(spec))
                            if every else k, cls=cls, target=target, granularity=granularity,
                            seed=seed, device=device, on_batch=on_batch, shapley=shapley,
                            allow_nonfinite=allow_nonfinite, ray=ray, token_activity=token_activity).neurons

        if chosen.name == "hs":  # HS-FGSM ranks the neurons of the sub-model's output layer (its cut) only
            from .hs import sub_model_layers

            cut, layers, notes = sub_model_layers(model, cut, layers)
        neurons = rank(layers)
    if chosen.name == "deepsensor":
        neurons = excitable(neurons, shapley.lambda_)
    by_tensor = {layer.tensor: layer for layer in model.select_layers(list(dict.fromkeys(n.tensor for n in neurons)))} \
        if neurons else {}
    if chosen.name == "deepsensor":  # every layer of the Shapley game: Eq. 6 divides by all their neurons
        by_tensor = {**{layer.tensor: layer for layer in model.select_layers(layers)}, **by_tensor}
    seeds = choose_seeds(model, dataset, samples=samples, seed=seed, cls=cls, target=target, device=device,
                         allow_nonfinite=allow_nonfinite)
    x, y, positions, data_range = seeds.x, seeds.y, seeds.positions, seeds.data_range
    side: dict[str, np.ndarray] = {}
    if space is not None:  # the seeds' records become their embeddings; the mask rides along
        records_x, (x, side) = x, space.embed(x, device)
        data_range = space.value_range()
        tokenizer = getattr(dataset.source, "tokenizer", None)  # raw text: the tokenizer knows its special tokens
        specials = dataset.source.special_ids() if tokenizer is not None else space.special_ids(records_x)
        space = replace(space, specials=specials)  # fixed once from every seed, so that every chunk agrees
    clip = (data_range[0] if clip_min is None else clip_min, data_range[1] if clip_max is None else clip_max)
    if (clip_min is not None or clip_max is not None) and not clip[0] < clip[1]:
        raise OnnxFaultError(f"the valid range [{clip[0]:g}, {clip[1]:g}] is empty (--clip-min, --clip-max and the "
                             "data's range); give --clip-min below --clip-max")
    problem = Problem(model if space is None else space.sub, x, y, neurons, by_tensor, granularity, target, clip,
                      params["step"], params["distance"], params["iterations"], params["epsilon"], cut, device, options,
                      seed, side=side, space=space, records=records_x if space is not None else None)
    run = chosen.run  # imports the method's module (and its dependencies) before the clock starts
    if chosen.uses_torch:
        from ..adapters import gradients  # noqa: F401 - import torch before the clock starts

    size = dataset.options.batch_size
    peak_before = peak_rss_reset()
    began = time.perf_counter()
    synthesized = run_in_chunks(run, problem, size) if ray is None else run_on_ray(run, problem, size, ray)
    seconds = time.perf_counter() - began
    method_peak = peak_rss_mb()
    differentiable = problem.extra.get("differentiable")
    before = seeds.predictions
    fed = None if space is None else (lambda e, part: space.sub_records(e[part], {k: v[part] for k, v in side.items()}))
    if space is not None:
        synthesized = space.keep_fixed(records_x, x, synthesized)
    metrics, after = measure(problem.model, x, synthesized, y, before, neurons, by_tensor, granularity, target,
                             problem.scores_are_probabilities, device, size, fed)
    text_arrays = {}
    if space is not None:  # the projected token ids are the result: their predictions are the ones reported
        from .embedding import token_metrics

        projected = space.project(records_x, synthesized)
        on_tokens, after_tokens = token_metrics(space, records_x, projected, y, before, target,
                                                problem.scores_are_probabilities, device, size)
        metrics = {**metrics, "embedding": {k: metrics[k] for k in ("accuracy_after", "success_rate", "target_rate")},
                   **on_tokens}
        text_arrays = {**{f"original_{name}": records_x[name] for name in records_x.dtype.names},
                       **{name: projected[name] for name in projected.dtype.names},
                       "predictions_embedding": after}
        if tokenizer is not None:  # the texts as the tokenizer decodes the ids, before and after
            before_text = dataset.source.decode(records_x[space.token.name])
            after_text = dataset.source.decode(projected[space.token.name])
            metrics["texts"] = [{"before": b, "after": t} for b, t in zip(before_text, after_text)]
            text_arrays.update(text_before=np.asarray(before_text, str), text_after=np.asarray(after_text, str))
        after = after_tokens
    cuda_peak = differentiable.cuda_peak_mb() if differentiable is not None else None
    peak = max(peak_before, peak_rss_mb())  # the whole process: loading, spectrum, seeds, method, metrics
    report = {
        "method": chosen.name, "model": model.path, "data": dataset.path,
        "params": {**params, "class": cls, "target": target, "samples": samples, "seed": seed,
                   "measure": None if neurons_file else measure_name, "k": len(neurons), "layers": layers,
                   "granularity": granularity, "cut": problem.extra.get("cut", cut), "clip": list(clip),
                   "neurons_file": None if neurons_file is None else str(neurons_file), **options,
                   **({"token_activity": token_activity or "any"} if space is not None and neurons and
                      not neurons_file else {}),
                   **(shapley.params() if measure_name == "shapley" else {})},
        "neurons": [n.to_json() for n in neurons],
        "seeds": {"count": int(len(x)), "indices": positions.tolist()},
        **metrics,
        **(chosen.summarize(problem.cache, len(x)) if chosen.summarize else {}),
        "seconds": seconds,
        "peak_memory_mb": peak,
        "method_peak_memory_mb": method_peak,
        "cuda_peak_memory_mb": cuda_peak,
        "device": differentiable.device_name if differentiable is not None else "cpu",
        "input_layout": {"model": dataset.adaptation.model_layout, "sample_shape": list(dataset.source.sample_shape),
                         **({"sample_rate": dataset.source.sample_rate} if dataset.source.sample_rate else {})},
        **({"from": space.start, "token_input": space.token.name} if space is not None else {}),
        **stamp(model),
    }
    arrays = {"original": x, "synthesized": synthesized, "labels": y, "predictions_before": before,
              "predictions_after": after, **text_arrays}
    layout, sample_shape = ((dataset.adaptation.model_layout, dataset.source.sample_shape) if space is None
                            else ("same", tuple(x.shape[1:])))
    if space is not None and start is None:
        notes.append(f"{chosen.name}: differentiating from the embedding lookup {space.start} of "
                     f"'{space.token.name}' (choose another with --from)")
    return SynthesisResult(report, arrays, clip, layout, sample_shape, [*model.notes, *notes, *seeds.warnings()])


def _embedding_space(chosen, model: Model, start: str | None):
    """The token-embedding space of a text model (or of any model given ``start``), where ``chosen`` must run;
    None for a model with one float input and no ``start``."""
    if model.takes_one_float_input and start is None:
        if chosen.text_only:
            raise OnnxFaultError(f"{chosen.name} substitutes tokens: it runs on text models (an integer input of token "
                                 f"ids), and this model takes one float input ({model.input_name}); use fgsm, pgd, "
                                 "deepfault or hs")
        return None
    if not chosen.embeddings:
        usable = ", ".join(name for name, m in METHODS.items() if m.embeddings)
        raise OnnxFaultError(f"{chosen.name} perturbs one float input; this model takes "
                             f"{', '.join(f'{i.name} ({i.dtype})' for i in model.inputs)}: on text models use "
                             f"{usable}")
    if model.takes_one_float_input:
        raise OnnxFaultError("--from starts the differentiated model at a token embedding; this model takes one "
                             "float input, which is differentiated directly: leave --from out")
    from .embedding import embedding_space

    return embedding_space(model, start)
