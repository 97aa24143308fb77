"""Synthesis: turn suspicious neurons into new inputs, and measure them (one schema for every method).

Methods: one module each (a :class:`~.contract.Method` with its ``Options``), one registry line each
(:mod:`.methods`); this module runs any of them and knows none by name. ``measure="random"`` gives a uniform
random neuron ranking (DeepFault's Table 3 baseline is in examples/deepfault_table3.py).
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..data import DataLike, DataOptions, Dataset, as_data
from ..data.source import class_notes, class_record
from ..distributed.options import holds_ray
from ..errors import OnnxFaultError, OnnxFaultWarning, check_arguments, check_finite, read_json, warn
from ..localization import LocalizeResult, SuspiciousNeuron, localize, samples_for
from ..measures import get_measure
from ..model import Model, as_model
from ..model_forms import ModelLike
from ..peak_memory import peak_rss_mb, peak_rss_reset
from ..provenance import stamp
from ..results import header
from ..shapley import ShapleyOptions
from ..spectrum import Outcome, validate_outcome
from ..weights import weights_digest
from .base import Problem
from .contract import Method, NeuronRequest, Selection, with_options
from .methods import METHODS, get_method, register
from .metrics import measure as measure_inputs
from .running import run_in_chunks, run_on_ray
from .seeds import choose_seeds

__all__ = ["METHODS", "Method", "SynthesisResult", "synthesize", "read_neurons", "register", "register_method"]
register_method = register  # as the package exports it


@dataclass
class SynthesisResult:
    """What ``synthesize`` made: ``report`` (``report.json``: the method, its ``params``, the neurons, seeds and
    metrics) and ``arrays`` (``inputs.npz``: original, synthesized, labels, predictions before and after). The
    headline numbers are attributes: ``method``, ``success_rate``, ``target_rate``, ``accuracy_before``,
    ``accuracy_after``, ``distance`` (L0, L1, L2 and L∞ statistics), ``activation_increase``, ``seconds``.
    :meth:`save` writes the ``--out`` folder, ``from_json`` (or :func:`onnxfault.load`) reads it back."""

    kind = "synthesize"

    report: dict
    arrays: dict[str, np.ndarray]  # original, synthesized, labels, predictions_before, predictions_after
    clip: tuple[float, float]
    model_layout: str
    sample_shape: tuple[int, ...]
    warnings: list[str] = field(default_factory=list)

    method = property(lambda self: self.report["method"], doc="The method that ran.")
    params = property(lambda self: self.report["params"], doc="The settings that ran (``report.json``'s params).")
    success_rate = property(lambda self: self.report["success_rate"], doc="Share of seeds now misclassified.")
    target_rate = property(lambda self: self.report["target_rate"], doc="Share now predicted as the target.")
    accuracy_before = property(lambda self: self.report["accuracy_before"], doc="Accuracy on the seeds (1.0).")
    accuracy_after = property(lambda self: self.report["accuracy_after"], doc="Accuracy on the new inputs.")
    distance = property(lambda self: self.report["distance"], doc="L0, L1, L2, L∞ statistics of the changes.")
    activation_increase = property(lambda self: self.report["activation_increase"],
                                   doc="Share of (seed, neuron) pairs whose value rose (None without neurons).")
    seconds = property(lambda self: self.report["seconds"], doc="The method's run time.")

    def to_json(self) -> dict:
        """``report.json``."""
        return self.report

    @classmethod
    def from_json(cls, report: dict, arrays: dict[str, np.ndarray]) -> "SynthesisResult":
        """The result whose ``report.json`` is ``report`` and whose ``inputs.npz`` holds ``arrays``."""
        layout = report.get("input_layout", {})
        if "token_input" in report:  # a text model's inputs are token embeddings, drawn as they are
            model_layout, sample_shape = "same", tuple(arrays["original"].shape[1:])
        else:
            model_layout, sample_shape = layout.get("model", "same"), tuple(layout.get("sample_shape", ()))
        return cls(report, arrays, tuple(report["params"]["clip"]), model_layout, sample_shape, [])

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
        raise OnnxFaultError(f"`neurons` {path} does not fit the model: {err}", parameter="neurons") from err
    for n in neurons:
        size = layers[n.tensor].neurons(granularity)
        if n.index >= size:
            raise OnnxFaultError(f"`neurons` {path}: neuron index {n.index} of {n.tensor} is out of range (the layer "
                                 f"has {size} neurons at {granularity} granularity); was the file written for "
                                 "another model?")


@holds_ray
def synthesize(model: ModelLike, data: DataLike, *, method: str, cls: int | None = None,
               target: int | None = None, samples: int = 10, seed: int = 0, measure: str | None = None,
               k: int | None = None, layers: str | None = None, granularity: str | None = None,
               neurons=None, clip_min: float | None = None, clip_max: float | None = None, device: str = "auto",
               data_options: DataOptions | None = None, on_batch=None, shapley: ShapleyOptions | None = None,
               output: str | None = None, allow_nonfinite: bool = False, ray=None, example_input=None,
               start: str | None = None, token_activity: str | None = None, options=None,
               **method_options) -> SynthesisResult:
    """Select suspicious neurons (as ``localize``), draw seeds, run ``method``, and measure the result.

    ``method_options`` are the method's own settings (``distance``, ``step``, ``iterations``, ``epsilon``,
    ``cut``, ``population``, …: see ``onnxfault synthesize --help`` or ``METHODS[name].Options``), also given as
    ``options`` (a dict or the method's ``Options``); an option the method does not take is an error naming
    the options it takes. ``distance=None`` is no L∞ bound. Methods that use no neurons (``uses_neurons`` False)
    skip the spectrum and take none of ``measure``, ``k``, ``layers``, ``granularity``, ``neurons``,
    ``token_activity`` and ``shapley``. ``neurons``: a ``localize --json`` file, a :class:`LocalizeResult` or a
    list of :class:`SuspiciousNeuron` (its first ``k``, all when ``k`` is not given); otherwise the top ``k``
    (default 10) by ``measure`` (default ochiai, or the first of the method's ``measures``); a method may choose
    its neurons its own way (``choose_neurons``: all the excitable ones, or those of a sub-model's cut).
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
    ``neurons``: a list, a DataLoader or a ``tf.data.Dataset`` can be read twice, an iterator cannot.
    Returns a :class:`SynthesisResult`; its ``save`` writes the ``--out`` folder."""
    notes: list[str] = []
    measure, neurons = _renamed(method_options, measure, neurons)
    chosen = get_method(method)
    check_arguments(cls=(cls, (int, None)), target=(target, (int, None)), samples=(samples, int, 1),
                    seed=(seed, int, 0), measure=(measure, (str, None)), k=(k, (int, None), 1),
                    layers=(layers, (str, list, tuple, None)), granularity=(granularity, (str, None)),
                    clip_min=(clip_min, (float, None)), clip_max=(clip_max, (float, None)), device=(device, str),
                    output=(output, (str, None)), allow_nonfinite=(allow_nonfinite, bool), start=(start, (str, None)),
                    token_activity=(token_activity, (str, None)))
    if options is not None and not isinstance(options, (dict, chosen.Options)):
        raise OnnxFaultError(f"`options` must be a dict or {chosen.name}'s Options (got {type(options).__name__})",
                             parameter="options")
    given = {**(chosen.params(options) if isinstance(options, chosen.Options) else options or {}), **method_options}
    opts = chosen.make_options(given, warn=notes.append)
    measure = _neuron_measure(chosen, measure=measure, k=k, layers=layers, granularity=granularity, neurons=neurons,
                              token_activity=token_activity, shapley=shapley)
    shapley = (shapley or ShapleyOptions()).check()
    check_finite(noise=shapley.noise, lambda_=shapley.lambda_)
    if clip_min is not None and clip_max is not None and not clip_min < clip_max:
        raise OnnxFaultError(f"`clip_min` {clip_min} must be below `clip_max` {clip_max}", parameter="clip_min")
    model = as_model(model, output, example_input)
    validate_outcome(Outcome(cls=cls, target=target), model.num_classes)  # both in range, as neurons skip localize
    space = _embedding_space(chosen, model, start)
    data = as_data(data, data_options)  # once: the passes below share an iterable's reading
    dataset: Dataset = samples_for(model, data, data_options, None, target)
    neurons_file = str(neurons) if isinstance(neurons, (str, Path)) else None
    if not chosen.uses_neurons:  # no spectrum: the report says so (no neurons, k 0, no measure, layers or file)
        selection = Selection([], None)
    else:
        given_neurons, file_granularity, file_layers = (None, None, None) if neurons is None else \
            _given_neurons(neurons, model)
        if given_neurons is not None and k is not None and k > len(given_neurons):
            raise OnnxFaultError(f"`k` {k} is more than the {len(given_neurons)} neurons `neurons` gives; "
                                 "lower it or leave it out (all of them)", parameter="k")
        granularity = file_granularity or granularity or "channel"

        def rank(spec: str, count: int | None) -> list[SuspiciousNeuron]:
            every = sum(layer.neurons(granularity) for layer in model.select_layers(spec))
            with warnings.catch_warnings():  # the model's notes come once, with this run's
                warnings.simplefilter("ignore", OnnxFaultWarning)
                return localize(model, samples_for(model, data, data_options, cls, target), layers=spec,
                                measure=measure, k=every if count is None else count, cls=cls, target=target,
                                granularity=granularity, seed=seed, device=device, on_batch=on_batch,
                                shapley=shapley, allow_nonfinite=allow_nonfinite, ray=ray,
                                token_activity=token_activity).neurons

        request = NeuronRequest(model, file_layers or layers or "auto", k, granularity, given_neurons, rank, shapley)
        selection = chosen.choose_neurons(request, opts)
        opts = with_options(selection, opts)
        notes += selection.notes
    chosen_neurons, layers = selection.neurons, selection.layers
    if not chosen.uses_neurons:
        granularity = measure = None
    by_tensor = {layer.tensor: layer for layer in model.select_layers(
        list(dict.fromkeys(n.tensor for n in chosen_neurons)))} if chosen_neurons else {}
    if selection.game_layers:  # every layer of the method's game, besides the chosen neurons' own
        by_tensor = {**{layer.tensor: layer for layer in model.select_layers(selection.game_layers)}, **by_tensor}
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
        raise OnnxFaultError(f"the valid range [{clip[0]:g}, {clip[1]:g}] is empty (`clip_min`, `clip_max` and the "
                             "data's range); give `clip_min` below `clip_max`", parameter="clip_min")
    problem = Problem(model=model if space is None else space.sub, x=x, y=y, neurons=chosen_neurons, layers=by_tensor,
                      granularity=granularity, target=target, clip=clip, options=opts, device=device, seed=seed,
                      side=side, space=space, records=records_x if space is not None else None,
                      prepared=chosen.prepare(model, dataset, opts, device))
    if chosen.uses_torch:
        from ..adapters import gradients  # noqa: F401 - import torch before the clock starts

    size = dataset.options.batch_size
    peak_before = peak_rss_reset()
    began = time.perf_counter()
    synthesized, parts = (run_in_chunks(chosen.run, problem, size) if ray is None
                          else run_on_ray(chosen.run, problem, size, ray))
    seconds = time.perf_counter() - began
    method_peak = peak_rss_mb()
    differentiable = problem.module
    before = seeds.predictions
    fed = None if space is None else (lambda e, part: space.sub_records(e[part], {k: v[part] for k, v in side.items()}))
    if space is not None:
        synthesized = space.keep_fixed(records_x, x, synthesized)
    metrics, after = measure_inputs(problem.model, x, synthesized, y, before, chosen_neurons, by_tensor, granularity,
                                    target,
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
        **header("synthesize"),
        "method": chosen.name, "model": model.path, "model_weights": weights_digest(model.proto),
        "data": dataset.path,
        "params": {**chosen.params(opts), "class": cls, "target": target, "samples": samples, "seed": seed,
                   "measure": measure, "k": len(chosen_neurons), "layers": layers, "granularity": granularity,
                   "clip": list(clip), "neurons_file": neurons_file,
                   **({"token_activity": token_activity or "any"} if space is not None and chosen_neurons and
                      neurons is None else {}),
                   **(shapley.params() if measure == "shapley" else {})},
        "neurons": [n.to_json() for n in chosen_neurons],
        "seeds": {"count": int(len(x)), "indices": positions.tolist()},
        **metrics,
        **chosen.summarize(chosen.merge(parts), problem),
        "seconds": seconds,
        "peak_memory_mb": peak,
        "method_peak_memory_mb": method_peak,
        "cuda_peak_memory_mb": cuda_peak,
        "device": differentiable.device_name if differentiable is not None else "cpu",
        "input_layout": {"model": dataset.adaptation.model_layout, "sample_shape": list(dataset.source.sample_shape),
                         **({"sample_rate": dataset.source.sample_rate} if dataset.source.sample_rate else {})},
        **({"from": space.start, "token_input": space.token.name} if space is not None else {}),
        **stamp(model),
        **class_record(dataset.source),
    }
    arrays = {"original": x, "synthesized": synthesized, "labels": y, "predictions_before": before,
              "predictions_after": after, **text_arrays}
    layout, sample_shape = ((dataset.adaptation.model_layout, dataset.source.sample_shape) if space is None
                            else ("same", tuple(x.shape[1:])))
    if space is not None and start is None:
        notes.append(f"{chosen.name}: differentiating from the embedding lookup {space.start} of "
                     f"'{space.token.name}' (choose another with `start`)")
    result = SynthesisResult(report, arrays, clip, layout, sample_shape,
                             [*model.notes, *class_notes(dataset.source), *notes, *seeds.warnings()])
    warn(result.warnings)
    return result


def _renamed(method_options: dict, measure, neurons) -> tuple:
    """``measure`` and ``neurons``, taken from their names before 0.2 (``measure_name``, ``neurons_file``, popped
    from ``method_options``) with a DeprecationWarning when given so."""
    values = {"measure": measure, "neurons": neurons}
    for old, new in (("measure_name", "measure"), ("neurons_file", "neurons")):
        if old in method_options:
            if values[new] is not None:
                raise OnnxFaultError(f"`{old}` is the old name of `{new}`; give `{new}` only", parameter=old)
            warnings.warn(f"synthesize: {old}= is deprecated, use {new}=", DeprecationWarning, stacklevel=4)
            values[new] = method_options.pop(old)
    return values["measure"], values["neurons"]


def _neuron_measure(chosen: Method, **given) -> str | None:
    """The measure neurons are ranked by (None when the method uses none, or ``neurons`` gives them), after
    checking that every neuron argument given is one the run uses: none for a method without neurons; with
    ``neurons``, no ``measure``, ``layers``, ``granularity`` or ``token_activity``; a measure the method ranks by;
    ``shapley`` only when the ranking is by Shapley value."""
    unused = [name for name, value in given.items() if value is not None]
    if not chosen.uses_neurons and unused:
        raise OnnxFaultError(f"{chosen.name} uses no suspicious neurons, so it does not take "
                             f"{' or '.join(f'`{n}`' for n in unused)}; drop {'it' if len(unused) == 1 else 'them'}",
                             parameter=unused[0])
    measure, neurons = given["measure"], given["neurons"]
    if neurons is not None:
        fixed = [name for name in ("measure", "layers", "granularity", "token_activity") if given[name] is not None]
        if fixed:
            raise OnnxFaultError(f"`neurons` gives the neurons, so {' and '.join(f'`{n}`' for n in fixed)} would "
                                 "not be used; drop one or the other", parameter=fixed[0])
    if chosen.measures and measure is not None and measure not in chosen.measures:
        raise OnnxFaultError(f"{chosen.name} chooses neurons by {' or '.join(chosen.measures)} value, not {measure}; "
                             f"drop `measure`", parameter="measure")
    if chosen.uses_neurons and neurons is None:
        measure = measure or (chosen.measures[0] if chosen.measures else "ochiai")
        get_measure(measure)
    if given["shapley"] is not None and measure != "shapley" and "shapley" not in (chosen.measures or ()):
        raise OnnxFaultError("`shapley` sets how Shapley values are estimated, and this run ranks neurons by "
                             f"{measure or 'no measure'}; drop it or rank with `measure` shapley", parameter="shapley")
    return measure


def _given_neurons(neurons, model: Model) -> tuple[list[SuspiciousNeuron], str, str]:
    """Neurons, granularity and layers spec from ``neurons``: a ``localize --json`` file, a
    :class:`LocalizeResult` or a list of :class:`SuspiciousNeuron`; each must fit ``model``."""
    if isinstance(neurons, (str, Path)):
        return read_neurons(neurons, model)
    if isinstance(neurons, LocalizeResult):
        found, granularity = list(neurons.neurons), neurons.spectrum.granularity
    elif isinstance(neurons, (list, tuple)) and all(isinstance(n, SuspiciousNeuron) for n in neurons):
        found, granularity = list(neurons), "channel"
    else:
        raise OnnxFaultError(f"`neurons` must be a `onnxfault localize --json` file, a LocalizeResult or a list of "
                             f"SuspiciousNeuron (got {type(neurons).__name__})", parameter="neurons")
    problem = _neurons_problem(found, granularity)
    if problem:
        raise OnnxFaultError(f"`neurons`: {problem}", parameter="neurons")
    check_neurons(found, model, granularity, "given")
    return found, granularity, ",".join(dict.fromkeys(n.tensor for n in found))


def _embedding_space(chosen, model: Model, start: str | None):
    """The token-embedding space of a text model (or of any model given ``start``), where ``chosen`` must run;
    None for a model with one float input and no ``start``."""
    if model.takes_one_float_input and start is None:
        if chosen.text_only:
            usable = ", ".join(name for name, m in METHODS.items() if not m.text_only)
            raise OnnxFaultError(f"{chosen.name} runs on text models only (an integer input of token ids), and this "
                                 f"model takes one float input ({model.input_name}); use {usable}", parameter="method")
        return None
    if not chosen.embeddings:
        usable = ", ".join(name for name, m in METHODS.items() if m.embeddings)
        raise OnnxFaultError(f"{chosen.name} perturbs one float input; this model takes "
                             f"{', '.join(f'{i.name} ({i.dtype})' for i in model.inputs)}: on text models use "
                             f"{usable}")
    if model.takes_one_float_input:
        raise OnnxFaultError("`start` starts the differentiated model at a token embedding; this model takes one "
                             "float input, which is differentiated directly: leave `start` out", parameter="start")
    from .embedding import embedding_space

    return embedding_space(model, start)
