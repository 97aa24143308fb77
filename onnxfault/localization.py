"""``localize``: rank the neurons of a model by suspiciousness (DeepFault step 1)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .data import DataLike, DataOptions, Dataset, as_dataset
from .data.source import class_notes, class_record
from .errors import OnnxFaultError, check_arguments, check_finite, warn
from .results import header, provenance_of
from .files import Writer
from .measures import get_measure, rank, score
from .model import Layer, Model, as_model
from .model_forms import ModelLike
from .provenance import stamp
from .spectrum import Outcome, Spectrum, hit_spectrum, validate_outcome

SUMMARY_ABOVE = 10_000  # neurons: above this many, the --json file summarises each layer's scores
COUNTS = ("as", "af", "ns", "nf")  # the hit spectrum's four counts, rows of Spectrum.counts
HISTOGRAM_BINS = 32  # bins of a layer summary's histogram


@dataclass(frozen=True)
class SuspiciousNeuron:
    """One ranked neuron: ``index`` is the flat C-order position within ``tensor`` (per sample)."""

    rank: int
    tensor: str
    index: int
    score: float
    as_: int
    af: int
    ns: int
    nf: int
    extra: dict | None = field(default=None, compare=False)  # e.g. the raw Shapley value and its error

    def to_json(self) -> dict:
        return {"rank": self.rank, "tensor": self.tensor, "index": self.index, "score": self.score,
                "as": self.as_, "af": self.af, "ns": self.ns, "nf": self.nf, **(self.extra or {})}

    @classmethod
    def from_json(cls, data: dict) -> "SuspiciousNeuron":
        """The neuron :meth:`to_json` wrote (keys besides the eight are its ``extra``)."""
        extra = {k: v for k, v in data.items() if k not in _NEURON_KEYS}
        return cls(data["rank"], data["tensor"], data["index"], float(data["score"]), data["as"], data["af"],
                   data["ns"], data["nf"], extra or None)


_NEURON_KEYS = ("rank", "tensor", "index", "score", "as", "af", "ns", "nf")


@dataclass
class LocalizeResult:
    """What ``localize`` found: the hit ``spectrum`` of every neuron of the chosen layers, their ``scores`` by
    ``measure`` and the top ``neurons``; ``accuracy``, ``samples`` and ``failing`` are the spectrum's.
    ``to_json()`` is the ``--json`` file, ``from_json`` (or :func:`onnxfault.load`) reads it back."""

    kind = "localize"

    model: str
    data: str
    measure: str
    spectrum: Spectrum
    scores: np.ndarray  # one per neuron, concatenated in layer order
    neurons: list[SuspiciousNeuron]
    params: dict
    warnings: list[str] = field(default_factory=list)
    details: dict[str, np.ndarray] = field(default_factory=dict)  # per-neuron values besides the score
    provenance: dict = field(default_factory=dict)  # command, created, versions, platform, model_io

    @property
    def layers(self) -> list[Layer]:
        return self.spectrum.layers

    @property
    def samples(self) -> int:
        return self.spectrum.samples

    @property
    def failing(self) -> int:
        return self.spectrum.failing

    @property
    def accuracy(self) -> float:
        return self.spectrum.correct / self.spectrum.samples

    @property
    def summarized(self) -> bool:
        """Whether :meth:`to_json` summarises each layer's scores: more than :data:`SUMMARY_ABOVE` neurons."""
        return len(self.scores) > SUMMARY_ABOVE

    def to_json(self, spectra: str | None = None) -> dict:
        """The ``--json`` file. Each layer holds its ``scores``; above :data:`SUMMARY_ABOVE` neurons it holds a
        ``summary`` (:func:`score_summary`) instead, and ``spectra`` names the npz that holds every score
        (:meth:`spectra_arrays`), relative to the JSON's folder (None: no such file)."""
        sp = self.spectrum
        layers = [{**layer.to_json(sp.granularity), "channel_axis": layer.channel_axis,
                   **({"summary": score_summary(self.scores[start:end])} if self.summarized
                      else {"scores": self.scores[start:end],
                            "counts": {name: sp.counts[row, start:end] for row, name in enumerate(COUNTS)},
                            **({"details": {k: v[start:end] for k, v in self.details.items()}}
                               if self.details else {})})}
                  for layer, start, end in zip(sp.layers, sp.offsets[:-1], sp.offsets[1:])]
        return {
            **header("localize"),
            "model": self.model,
            "data": self.data,
            "measure": self.measure,
            "mode": sp.outcome.mode,
            "class": sp.outcome.cls,
            "target": sp.outcome.target,
            "samples": sp.samples,
            "failing": sp.failing,
            "accuracy": sp.correct / sp.samples,
            "granularity": sp.granularity,
            "threshold": sp.threshold,
            **({"token_activity": sp.token_activity} if sp.token_activity else {}),
            "params": self.params,
            "device": sp.device,
            "layers": layers,
            **({"spectra": spectra} if self.summarized else {}),
            "neurons": [n.to_json() for n in self.neurons],
            **self.provenance,
        }

    @classmethod
    def from_json(cls, data: dict, spectra: dict[str, np.ndarray] | None = None) -> "LocalizeResult":
        """The result :meth:`to_json` wrote; ``spectra``: the arrays of the npz it names (every count and score,
        when it summarises its layers)."""
        layers = [Layer(l["tensor"], l["op"], tuple(l["shape"]), l.get("channel_axis")) for l in data["layers"]]
        if spectra is not None:
            counts = np.stack([spectra[name] for name in COUNTS]).astype(np.int64)
            scores = np.asarray(spectra["scores"], np.float64)
            details = {k: v for k, v in spectra.items() if k not in (*COUNTS, "scores", "tensors", "layer", "index",
                                                                     "offsets")}
        elif all("counts" in l for l in data["layers"]):
            counts = np.stack([np.concatenate([np.asarray(l["counts"][name], np.int64).reshape(-1)
                                               for l in data["layers"]]) for name in COUNTS])
            scores = np.concatenate([np.asarray(l["scores"], np.float64).reshape(-1) for l in data["layers"]])
            names = data["layers"][0].get("details", {}) if data["layers"] else {}
            details = {k: np.concatenate([np.asarray(l["details"][k], np.float64) for l in data["layers"]])
                       for k in names}
        else:
            raise ValueError("it holds no counts (written by an onnxfault before 0.2): run localize again to load it")
        samples = data["samples"]
        spectrum = Spectrum(layers, data["granularity"], data["threshold"], Outcome(data["mode"], data["class"], data["target"]),
                            counts, samples, data["failing"], int(round(data["accuracy"] * samples)),
                            data.get("device", "cpu"), data.get("token_activity"))
        return cls(data["model"], data["data"], data["measure"], spectrum, scores,
                   [SuspiciousNeuron.from_json(n) for n in data["neurons"]], data["params"], [], details,
                   provenance_of(data))

    def spectra_arrays(self) -> dict[str, np.ndarray]:
        """All counts and scores, one entry per neuron (``--spectra`` file)."""
        sp = self.spectrum
        sizes = np.diff(sp.offsets)
        number = np.repeat(np.arange(len(sizes)), sizes)  # sp.layer_of's answer, without its temporaries
        index = np.concatenate([np.arange(size) for size in sizes])
        return {"tensors": np.array([layer.tensor for layer in sp.layers]), "layer": number, "index": index,
                "as": sp.as_, "af": sp.af, "ns": sp.ns, "nf": sp.nf, "scores": self.scores,
                "offsets": sp.offsets, **self.details}

    def score_arrays(self) -> dict[str, np.ndarray]:
        """The ``scores`` and ``offsets`` of :meth:`spectra_arrays`: what the report draws its heatmaps from."""
        return {"scores": self.scores, "offsets": self.spectrum.offsets}

    def outputs(self, json: str | Path | None = None, spectra: str | Path | None = None
                ) -> tuple[dict, list[tuple[Path, Writer]]]:
        """The ``--json`` dict and the (path, writer) pairs of the ``json`` and ``spectra`` files, for
        :func:`~onnxfault.files.write_together`. When :attr:`summarized`, the npz is written beside ``json``
        (:func:`spectra_beside`) unless ``spectra`` names it, and the dict names it (:func:`spectra_name`)."""
        from . import files  # looked up now: tests hook the writers

        if json is not None and spectra is None and self.summarized:
            spectra = spectra_beside(json)
        info = self.to_json(spectra_name(json, spectra) if json is not None and spectra is not None else None)
        outputs = [(Path(json), files.json_writer(info))] if json is not None else []
        if spectra is not None:  # the arrays are made while writing, and freed after
            outputs.append((Path(spectra), lambda tmp: files.npz_writer(self.spectra_arrays())(tmp)))
        return info, outputs

    def save(self, json: str | Path | None = None, spectra: str | Path | None = None) -> list[Path]:
        """Write the ``--json`` and ``--spectra`` files (see :meth:`outputs`) all together or not at all."""
        from .files import write_together

        return write_together(self.outputs(json, spectra)[1])

    def plot(self):
        """The report's figure of this result: its top-k neurons per layer (a matplotlib ``Figure``)."""
        from .report import result_figure

        return result_figure(self)

    def _report_run(self):
        from .report.results import memory_run

        return memory_run("localize", self.to_json(), self.score_arrays())

    def _repr_html_(self) -> str:
        from .report import result_html

        return result_html(self)

    def __rich__(self):
        from .display import localize_view

        return localize_view(self.to_json())

    def __repr__(self) -> str:
        sp, top = self.spectrum, ", ".join(f"{n.tensor}[{n.index}] {n.score:.4g}" for n in self.neurons[:3])
        return (f"<LocalizeResult {self.measure}: {sp.samples} samples, {sp.failing} failing; top "
                f"{len(self.neurons)} of {len(self.scores)} neurons in {len(sp.layers)} layers: "
                f"{top}{' …' if len(self.neurons) > 3 else ''}>")


def score_summary(scores: np.ndarray) -> dict:
    """A layer's scores in brief: ``count``, ``min``, ``quartiles`` (25, 50 and 75 %, numpy's linear
    interpolation), ``max`` and a ``histogram`` of :data:`HISTOGRAM_BINS` equal bins over [min, max]
    (numpy's ``counts`` and ``edges``)."""
    counts, edges = np.histogram(scores, bins=HISTOGRAM_BINS)
    return {"count": len(scores), "min": float(scores.min()), "quartiles": np.quantile(scores, [0.25, 0.5, 0.75]),
            "max": float(scores.max()), "histogram": {"counts": counts, "edges": edges}}


def spectra_beside(json: str | Path) -> Path:
    """Where a summarised ``--json`` FILE.json gets its npz when ``--spectra`` is not given: FILE.spectra.npz."""
    return Path(json).with_suffix(".spectra.npz")


def spectra_name(json: str | Path | None, spectra: str | Path) -> str:
    """How the ``--json`` file names its npz: the file name when the two share a folder (so they move
    together), else the npz's absolute path."""
    spectra = Path(spectra)
    if json is not None and Path(json).resolve().parent == spectra.resolve().parent:
        return spectra.name
    return str(spectra.resolve())


def outcome_for(cls: int | None, target: int | None) -> Outcome:
    if cls is not None and target is not None:
        raise OnnxFaultError("`cls` and `target` exclude each other; use `target` T with `classes` to narrow samples")
    if target is not None:
        return Outcome("target", target=target)
    if cls is not None:
        return Outcome("class", cls=cls)
    return Outcome("all")


def samples_for(model: Model, data: DataLike, options: DataOptions | None = None, cls: int | None = None,
                target: int | None = None) -> Dataset:
    """The samples ``localize`` counts, from ``data`` in any form :func:`~onnxfault.data.as_dataset` takes:
    ``cls`` keeps only those labelled ``cls`` (checked against the model), except in a :class:`Dataset`
    already fitted to a model, which is used as given."""
    validate_outcome(outcome_for(cls, target), model.num_classes)
    return as_dataset(data, model.data_shape, options, cls=cls, num_classes=model.num_classes)


def top_k(spectrum: Spectrum, scores: np.ndarray, k: int,
          details: dict[str, np.ndarray] | None = None) -> list[SuspiciousNeuron]:
    """The ``k`` best neurons; equal scores go to the deeper layer first, then the lower index
    (DeepFault's Algorithm 1; see :func:`~onnxfault.measures.rank`). ``details`` ride along."""
    layer, index = spectrum.layer_of(np.arange(len(scores)))
    order = rank(scores, layer, index)[:k]
    counts = spectrum.counts
    return [
        SuspiciousNeuron(r + 1, spectrum.layers[layer[p]].tensor, int(index[p]), float(scores[p]),
                         *(int(c) for c in counts[:, p]),
                         extra={key: float(v[p]) for key, v in details.items()} if details else None)
        for r, p in enumerate(order)
    ]


def shapley_scores(model: Model, dataset: Dataset, layers: list[Layer], granularity: str, options,
                   target: int | None, seed: int, device: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Normalised Shapley values (the scores) and the raw values with their standard errors, estimated on
    ``options.samples`` samples drawn from ``dataset`` with ``seed``; the loss is against the labels, or
    against ``target`` when given."""
    from .shapley import neuron_shapley

    rng = np.random.default_rng(seed)
    positions = np.sort(rng.choice(len(dataset), size=min(options.samples, len(dataset)), replace=False))
    labels = dataset.labels[positions] if target is None else np.full(len(positions), target, np.int64)
    estimate = neuron_shapley(model, dataset.take(positions), labels, layers, granularity=granularity,
                              options=options, seed=seed, device=device)
    return estimate.normalized, {"shapley": estimate.values, "shapley_stderr": estimate.stderr}


def localize(model: ModelLike, data: DataLike, *, layers: str | Sequence[str] = "auto",
             measure: str = "ochiai", k: int = 10, cls: int | None = None, target: int | None = None,
             granularity: str = "channel", threshold: float = 0.0, star: float = 3.0, seed: int = 0,
             device: str = "auto", data_options: DataOptions | None = None,
             on_batch: Callable[[int], None] | None = None, shapley=None, output: str | None = None,
             allow_nonfinite: bool = False, ray=None, example_input=None,
             token_activity: str | None = None) -> LocalizeResult:
    """Hit spectrum of the chosen layers over ``data`` and the ``k`` most suspicious neurons.

    ``cls`` keeps only samples labelled ``cls`` (DeepFault); ``target`` explains "predicted as target"
    (``data_options.classes`` narrows the samples). ``data`` is a path, a pair ``(x, y)`` of numpy arrays or
    torch tensors, an iterable of ``(x, y)`` batches (read once, batch by batch) or a :class:`Dataset` (one
    fitted to a model is used as given: ``cls`` then only sets the mode); see :func:`~onnxfault.data.as_dataset`. ``shapley`` (a :class:`~onnxfault.shapley.ShapleyOptions`)
    tunes ``measure="shapley"``; ``output`` names the class-score output of a model with several. NaN or
    infinite class scores are an error unless ``allow_nonfinite``. ``ray`` (a
    :class:`~onnxfault.distributed.RayOptions`) counts the spectrum on Ray workers. ``model`` is any form
    :func:`~onnxfault.as_model` takes (a torch module with ``example_input``). ``token_activity`` (``any``,
    ``mean``, ``cls``) is a text model's token rule (:mod:`onnxfault.spectrum`). Returns a :class:`LocalizeResult`.
    """
    from .shapley import ShapleyOptions

    check_arguments(measure=(measure, str), k=(k, int, 1), cls=(cls, (int, None)), target=(target, (int, None)),
                    layers=(layers, (str, list, tuple)), granularity=(granularity, str), threshold=(threshold, float),
                    star=(star, float), seed=(seed, int, 0), device=(device, str), output=(output, (str, None)),
                    allow_nonfinite=(allow_nonfinite, bool), token_activity=(token_activity, (str, None)))
    chosen_measure = get_measure(measure)  # fail fast on an unknown name
    shapley = (shapley or ShapleyOptions()).check()
    check_finite(noise=shapley.noise, lambda_=shapley.lambda_)
    outcome = outcome_for(cls, target)
    model = as_model(model, output, example_input)
    chosen = model.select_layers(layers)
    dataset = samples_for(model, data, data_options, cls, target)
    spectrum = hit_spectrum(model, dataset, chosen, outcome, granularity=granularity, threshold=threshold,
                            device=device, on_batch=on_batch, allow_nonfinite=allow_nonfinite, ray=ray,
                            token_activity=token_activity)
    details: dict[str, np.ndarray] = {}
    if chosen_measure.needs_model:
        scores, details = shapley_scores(model, dataset, chosen, granularity, shapley, target, seed, device)
    else:
        scores = score(measure, spectrum.counts, star=star, seed=seed)
    warnings = [*model.notes, *class_notes(dataset.source)]
    if spectrum.failing == 0:
        what = f"predicted as the target {target}" if target is not None else "misclassified"
        warnings.append(f"no sample is {what}: af = 0 for every neuron, so the ranking carries no information; "
                        "use more or other samples")
    total = len(scores)
    if k > total:
        warnings.append(f"`k` {k} is more than the {total} neurons in the chosen layers; showing all {total}")
        k = total
    params = {"k": k, "star": star, "seed": seed, "layers": layers if isinstance(layers, str) else list(layers)}
    if chosen_measure.needs_model:
        params.update(shapley.params(), excitable=int(np.count_nonzero(scores > shapley.lambda_)))
    result = LocalizeResult(model.path, dataset.path, chosen_measure.name, spectrum, scores,
                            top_k(spectrum, scores, k, details), params, warnings, details,
                            {**stamp(model), **class_record(dataset.source)})
    warn(result.warnings)
    return result
