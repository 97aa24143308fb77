"""``compare``: do two models (e.g. one network exported from two frameworks) behave the same on the same data?

Both models run on the same samples, each fed them in its own input layout. The result says how far their
class scores lie apart, whether every hit-spectrum count of paired layers is identical, and, per suspiciousness
measure, whether the top-k neurons and the whole ranking agree. Layers pair by position among each model's
candidate layers (or as ``pairs`` names them); neurons pair by index, in channel-first order, so a (C, H, W)
layer pairs with its (H, W, C) twin at element granularity too.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from .data import DataLike, DataOptions, Dataset, as_dataset
from .errors import OnnxFaultError, check_arguments
from .localization import SuspiciousNeuron
from .results import header
from .measures import get_measure, rank, score
from .model import Layer, Model, as_model
from .model_forms import ModelLike
from .spectrum import Outcome, Spectrum, hit_spectrum

DEFAULT_MEASURES = ("tarantula", "ochiai", "dstar")


@dataclass(frozen=True)
class LayerPair:
    """Two paired layers: ``identical`` of their ``neurons`` have the same four counts (as, af, ns, nf)."""

    tensor_a: str
    tensor_b: str
    neurons: int
    identical: int

    @property
    def equal(self) -> bool:
        return self.identical == self.neurons

    def to_json(self) -> dict:
        return {"tensor_a": self.tensor_a, "tensor_b": self.tensor_b, "neurons": self.neurons,
                "identical": self.identical}


@dataclass(frozen=True)
class MeasureAgreement:
    """How one measure's rankings of the two models agree.

    ``top_k_equal``: the same ``k`` neurons (paired layer, index) with the same scores in the same order;
    ``top_k_shared``: the share of model A's top-k neurons that are also in model B's; ``rank_correlation``:
    Spearman's ρ of all paired neurons' scores (1.0 when the scores are identical, None when undefined, e.g.
    constant scores); ``top_a``/``top_b``: each model's top-k, in its own tensor names and indices."""

    measure: str
    k: int
    scores_equal: bool
    top_k_equal: bool
    top_k_shared: float
    rank_correlation: float | None
    top_a: list[SuspiciousNeuron] = field(repr=False)
    top_b: list[SuspiciousNeuron] = field(repr=False)

    def to_json(self) -> dict:
        return {"measure": self.measure, "k": self.k, "scores_equal": self.scores_equal,
                "top_k_equal": self.top_k_equal, "top_k_shared": self.top_k_shared,
                "rank_correlation": self.rank_correlation,
                "top_a": [n.to_json() for n in self.top_a], "top_b": [n.to_json() for n in self.top_b]}


@dataclass
class CompareResult:
    """What :func:`compare` found; ``to_json()`` is what :meth:`save` writes.

    Class scores: ``max_logit_diff`` and ``mean_logit_diff`` are the largest and the mean absolute difference
    over every sample and class (in float64, of the scores as the models give them: logits or probabilities);
    ``prediction_agreement`` is the share of samples both models predict the same class for. ``from_json`` (or
    :func:`onnxfault.load`) reads a saved one back."""

    kind = "compare"

    model_a: str
    model_b: str
    data: str
    samples: int
    max_logit_diff: float
    mean_logit_diff: float
    prediction_agreement: float
    failing: tuple[int, int]  # misclassified samples of model A, of model B
    layers: list[LayerPair]
    measures: dict[str, MeasureAgreement]
    params: dict

    @property
    def mapping(self) -> list[tuple[str, str]]:
        """The paired tensors: (tensor in A, tensor in B), in layer order."""
        return [(p.tensor_a, p.tensor_b) for p in self.layers]

    @property
    def spectra_equal(self) -> dict[str, bool]:
        """Per measure: every count of every paired layer identical (so the measure's scores are too)."""
        same = all(p.equal for p in self.layers)
        return {m: same and a.scores_equal for m, a in self.measures.items()}

    @property
    def rankings_equal(self) -> dict[str, bool]:
        """Per measure: the same top-k neurons, scores and order."""
        return {m: a.top_k_equal for m, a in self.measures.items()}

    def to_json(self) -> dict:
        return {**header("compare"), "model_a": self.model_a, "model_b": self.model_b, "data": self.data, "samples": self.samples,
                "max_logit_diff": self.max_logit_diff, "mean_logit_diff": self.mean_logit_diff,
                "prediction_agreement": self.prediction_agreement,
                "failing": {"a": self.failing[0], "b": self.failing[1]},
                "layers": [p.to_json() for p in self.layers],
                "measures": {m: a.to_json() for m, a in self.measures.items()}, "params": self.params}

    @classmethod
    def from_json(cls, data: dict) -> "CompareResult":
        """The result :meth:`to_json` wrote."""
        measures = {name: MeasureAgreement(m["measure"], m["k"], m["scores_equal"], m["top_k_equal"],
                                           m["top_k_shared"], m["rank_correlation"],
                                           [SuspiciousNeuron.from_json(n) for n in m["top_a"]],
                                           [SuspiciousNeuron.from_json(n) for n in m["top_b"]])
                    for name, m in data["measures"].items()}
        return cls(data["model_a"], data["model_b"], data["data"], data["samples"], data["max_logit_diff"],
                   data["mean_logit_diff"], data["prediction_agreement"], (data["failing"]["a"], data["failing"]["b"]),
                   [LayerPair(**p) for p in data["layers"]], measures, data["params"])

    def save(self, path: str | Path) -> Path:
        """Write :meth:`to_json` to ``path`` as JSON (atomically)."""
        from .files import check_writable, write_json

        return write_json(check_writable(path, "compare output"), self.to_json())

    def plot(self):
        """The report's figure of this result: the agreement per paired layer and per measure."""
        from .report import result_figure

        return result_figure(self)

    def _report_run(self):
        from .report.results import memory_run

        return memory_run("compare", self.to_json())

    def __repr__(self) -> str:
        return f"CompareResult({summary_line(self)})"

    def __rich__(self):
        """Rich tables for a terminal REPL (``rich.print(result)``)."""
        return rich_tables(self)

    def _repr_html_(self) -> str:
        """Self-contained HTML tables for Jupyter, in the report's markup."""
        return html_tables(self)


def compare(model_a: ModelLike, model_b: ModelLike, data: DataLike, *, layers: str | Sequence[str] = "auto",
            pairs: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
            measures: Sequence[str] = DEFAULT_MEASURES, k: int = 10, example_input=None,
            granularity: str = "channel", threshold: float = 0.0, star: float = 3.0, seed: int = 0,
            device: str = "auto", data_options: DataOptions | None = None) -> CompareResult:
    """Compare two classifiers of the same classes on the same samples.

    ``model_a``, ``model_b``: any model form ``localize`` takes (a path, bytes, an ``onnx.ModelProto``, a
    ``torch.nn.Module``, a Keras 3 model, a :class:`~onnxfault.Model`); ``example_input`` (one batch) is what a
    torch module is exported on (not given to the other forms). ``data``: any data form ``localize`` takes;
    each model gets the same samples fitted to its own input (an iterable of batches is read four times, so
    not a one-shot iterator). ``layers`` (``auto``, ``all`` or tensor names present in both) picks each
    model's layers, paired by position; ``pairs`` ({tensor in A: tensor in B}) names the pairs instead. Paired
    layers must hold the same neurons. ``measures`` rank both spectra (spectrum measures only, not shapley);
    their top ``k`` neurons are compared. Returns a :class:`CompareResult`.

        >>> result = onnxfault.compare(net, "net.onnx", (x, y), example_input=x[:1])
        >>> result.max_logit_diff, result.rankings_equal
    """
    check_arguments(k=(k, int, 1), layers=(layers, (str, list, tuple)), granularity=(granularity, str),
                    threshold=(threshold, float), star=(star, float), seed=(seed, int, 0), device=(device, str))
    if isinstance(measures, str) or not all(isinstance(m, str) for m in measures):
        raise OnnxFaultError(f"`measures` must be a list of measure names (got {measures!r})", parameter="measures")
    chosen = [_spectrum_measure(m) for m in measures]
    if not chosen:
        raise OnnxFaultError("measures is empty; give one or more names such as ('tarantula', 'ochiai', 'dstar')")
    a, b = _load(model_a, "model_a", example_input), _load(model_b, "model_b", example_input)
    if a.num_classes != b.num_classes:
        raise OnnxFaultError(f"model_a has {a.num_classes} classes and model_b {b.num_classes}; compare needs two "
                             "classifiers of the same classes")
    paired = paired_layers(a, b, layers, pairs)
    set_a, set_b = fitted_datasets(data, a, b, data_options)
    scores = _score_agreement(a, b, set_a, set_b, device)
    spectra = [hit_spectrum(m, d, [p[i] for p in paired], Outcome(), granularity=granularity, threshold=threshold,
                            device=device) for i, (m, d) in enumerate(((a, set_a), (b, set_b)))]
    counts = [channel_first_counts(s) for s in spectra]
    bounds = spectra[0].offsets
    layer_pairs = [LayerPair(la.tensor, lb.tensor, int(end - start),
                             int(np.count_nonzero((counts[0][:, start:end] == counts[1][:, start:end]).all(axis=0))))
                   for (la, lb), start, end in zip(paired, bounds[:-1], bounds[1:])]
    agreements = {m: measure_agreement(m, spectra, counts, min(k, int(bounds[-1])), star, seed) for m in chosen}
    params = {"layers": layers if isinstance(layers, str) else list(layers), "granularity": granularity,
              "threshold": threshold, "k": k, "star": star, "seed": seed}
    return CompareResult(a.path, b.path, set_a.path, scores[0], scores[1], scores[2], scores[3],
                         (spectra[0].failing, spectra[1].failing), layer_pairs, agreements, params)


def _spectrum_measure(name: str) -> str:
    measure = get_measure(name)
    if measure.needs_model:
        raise OnnxFaultError(f"measure '{measure.name}' scores from the model, not from spectra; compare ranks "
                             "spectrum measures such as tarantula, ochiai or dstar")
    return measure.name


def _load(model, argument: str, example_input) -> Model:
    """The model as a :class:`Model`; an error names ``argument``. ``example_input`` goes to a torch module
    only: a Keras model on the other side takes its input in its own layout."""
    torch = sys.modules.get("torch")  # a torch module means torch is imported: never import it here
    is_torch = torch is not None and isinstance(model, torch.nn.Module)
    try:
        return as_model(model, example_input=example_input if is_torch else None)
    except OnnxFaultError as err:
        raise OnnxFaultError(f"{argument}: {err}") from None


def paired_layers(a: Model, b: Model, layers: str | Sequence[str] = "auto",
                  pairs: Mapping[str, str] | Sequence[tuple[str, str]] | None = None) -> list[tuple[Layer, Layer]]:
    """The layers of ``a`` and ``b`` paired: ``pairs`` as named, else ``layers`` of each, by position."""
    if pairs is not None:
        named = list(pairs.items()) if isinstance(pairs, Mapping) else [tuple(p) for p in pairs]
        if not named or any(len(p) != 2 for p in named):
            raise OnnxFaultError("pairs must map tensors of model_a to tensors of model_b, e.g. "
                                 "{'relu1': 'conv2d_1'} or [('relu1', 'conv2d_1')]")
        chosen = list(zip(_layers(a, [p[0] for p in named], "model_a"), _layers(b, [p[1] for p in named], "model_b")))
    else:
        in_a, in_b = _layers(a, layers, "model_a"), _layers(b, layers, "model_b")
        if len(in_a) != len(in_b):
            raise OnnxFaultError(f"model_a has {len(in_a)} layers ({', '.join(x.tensor for x in in_a)}) and model_b "
                                 f"{len(in_b)} ({', '.join(x.tensor for x in in_b)}); name the pairs with "
                                 "pairs={tensor in A: tensor in B}")
        chosen = list(zip(in_a, in_b))
    for la, lb in chosen:
        if channel_first_shape(la) != channel_first_shape(lb):
            raise OnnxFaultError(f"layers '{la.tensor}' {la.shape} and '{lb.tensor}' {lb.shape} do not hold the same "
                                 "neurons; pair layers of the same shape with pairs={tensor in A: tensor in B}")
    return chosen


def _layers(model: Model, spec: str | Sequence[str], argument: str) -> list[Layer]:
    """``model.select_layers(spec)``; an error names ``argument``."""
    try:
        return model.select_layers(spec)
    except OnnxFaultError as err:
        raise OnnxFaultError(f"{argument}: {err}") from None


def channel_first_shape(layer: Layer) -> tuple[int, ...]:
    """The layer's per-sample shape with its channel axis first (as is for 1-D layers)."""
    if layer.channel_axis is None:
        return layer.shape
    shape = list(layer.shape)
    return (shape.pop(layer.channel_axis), *shape)


def channel_first_order(layer: Layer, granularity: str) -> np.ndarray:
    """Per neuron in channel-first order, its index in the layer's own order (the identity at channel
    granularity, for 1-D layers and for channel-first layers)."""
    native = np.arange(layer.neurons(granularity))
    if granularity == "channel" or layer.channel_axis in (None, 0):
        return native
    return np.moveaxis(native.reshape(layer.shape), layer.channel_axis, 0).ravel()


def channel_first_counts(spectrum: Spectrum) -> np.ndarray:
    """The spectrum's (4, neurons) counts with each layer's neurons in channel-first order."""
    columns = [start + channel_first_order(layer, spectrum.granularity)
               for layer, start in zip(spectrum.layers, spectrum.offsets[:-1])]
    return spectrum.counts[:, np.concatenate(columns)]


def measure_agreement(measure: str, spectra: list[Spectrum], counts: list[np.ndarray], k: int, star: float,
                      seed: int) -> MeasureAgreement:
    """Both models' ``measure`` scores over their channel-first ``counts``, ranked the same way (deeper layer
    first on ties, then the lower channel-first index), and how they agree."""
    scores = [score(measure, c, star=star, seed=seed) for c in counts]
    layer, index = spectra[0].layer_of(np.arange(len(scores[0])))
    tops = [rank(s, layer, index)[:k] for s in scores]
    keys = [[(int(layer[p]), int(index[p]), float(s[p])) for p in top] for s, top in zip(scores, tops)]
    shared = len(set(tops[0].tolist()) & set(tops[1].tolist())) / k
    return MeasureAgreement(measure, k, bool(np.array_equal(scores[0], scores[1])), keys[0] == keys[1], shared,
                            rank_correlation(*scores),
                            *(_neurons(sp, c, s, top) for sp, c, s, top in zip(spectra, counts, scores, tops)))


def rank_correlation(x: np.ndarray, y: np.ndarray) -> float | None:
    """Spearman's ρ of ``x`` and ``y``: 1.0 when they are equal, None when undefined (a constant side)."""
    if np.array_equal(x, y):
        return 1.0
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    from scipy.stats import rankdata

    rx, ry = rankdata(x), rankdata(y)
    return float(np.corrcoef(rx, ry)[0, 1])


def _neurons(spectrum: Spectrum, counts: np.ndarray, scores: np.ndarray, top: np.ndarray) -> list[SuspiciousNeuron]:
    """The ranked channel-first positions ``top`` as neurons of ``spectrum``'s own layers and indices."""
    layer, index = spectrum.layer_of(top)
    native = [channel_first_order(spectrum.layers[n], spectrum.granularity)[i] for n, i in zip(layer, index)]
    return [SuspiciousNeuron(r + 1, spectrum.layers[n].tensor, int(i), float(scores[p]),
                             *(int(c) for c in counts[:, p]))
            for r, (n, i, p) in enumerate(zip(layer, native, top))]


def fitted_datasets(data: DataLike, a: Model, b: Model, options: DataOptions | None = None
                    ) -> tuple[Dataset, Dataset]:
    """The same samples of ``data`` (any form :func:`~onnxfault.data.as_dataset` takes) fitted to ``a``'s input
    and to ``b``'s, with the same selection and batches. An iterable of batches is read four times (class
    scores, then spectra, of both models): an iterator (a generator) cannot be, and says so."""
    first = as_dataset(data, a.data_shape, options, num_classes=a.num_classes)
    return first, first.fit(b.data_shape, first.options, b.num_classes)


def _score_agreement(a: Model, b: Model, set_a: Dataset, set_b: Dataset, device: str
                     ) -> tuple[int, float, float, float]:
    """(samples, max and mean absolute class-score difference, share of equal predictions), one batch at a
    time: both data sets hold the same samples in the same batches."""
    sessions = [m.session(device, preprocessing=d.preprocessing) for m, d in ((a, set_a), (b, set_b))]
    samples = agree = 0
    largest = total = 0.0
    for (_, y, (sa,)), (_, _, (sb,)) in zip(*(s.scored(d) for s, d in zip(sessions, (set_a, set_b)))):
        gap = np.abs(sa.astype(np.float64) - sb.astype(np.float64))
        largest, total = max(largest, float(gap.max())), total + float(gap.sum())
        agree += int(np.count_nonzero(sa.argmax(axis=-1) == sb.argmax(axis=-1)))
        samples += len(y)
    return samples, largest, total / (samples * a.num_classes), agree / samples


# ---- display: one line, rich tables, HTML tables --------------------------------------------------------
def summary_line(result: CompareResult) -> str:
    """``A vs B on N samples: max |Δ score| …, predictions agree …, … layers identical, top-k identical …``."""
    same = sum(p.equal for p in result.layers)
    ranked = [m for m, a in result.measures.items() if a.top_k_equal]
    k = next(iter(result.measures.values())).k
    return (f"{result.model_a} vs {result.model_b} on {result.samples} samples: max |Δ score| "
            f"{result.max_logit_diff:.3g}, predictions agree {100 * result.prediction_agreement:.2f} %, spectra "
            f"identical in {same}/{len(result.layers)} layers, top-{k} identical for "
            f"{', '.join(ranked) or 'no measure'}")


def _rows(result: CompareResult) -> dict[str, tuple[list[str], list[list]]]:
    """The three tables (caption → columns, rows of values) shown in HTML and in a terminal."""
    k = next(iter(result.measures.values())).k
    scores = [["model A", result.model_a], ["model B", result.model_b], ["samples", result.samples],
              ["max |Δ score|", result.max_logit_diff], ["mean |Δ score|", result.mean_logit_diff],
              ["predictions agree", Share(result.prediction_agreement)],
              ["misclassified (A, B)", f"{result.failing[0]}, {result.failing[1]}"]]
    layers = [[i + 1, p.tensor_a, p.tensor_b, p.neurons, p.identical] for i, p in enumerate(result.layers)]
    measures = [[m, a.scores_equal, a.top_k_equal, Share(a.top_k_shared),
                 "–" if a.rank_correlation is None else a.rank_correlation] for m, a in result.measures.items()]
    return {"Class scores": (["", "value"], scores),
            "Spectra per paired layer": (["pair", "tensor in A", "tensor in B", "neurons", "identical counts"], layers),
            f"Rankings (top-{k})": (["measure", "scores identical", f"top-{k} identical", f"top-{k} shared",
                                     "Spearman ρ"], measures)}


class Share(float):
    """A number shown as a percentage."""


def _shown(value) -> str:
    if isinstance(value, Share):
        return f"{100 * value:.2f} %"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def rich_tables(result: CompareResult):
    """The tables of :func:`_rows` as rich tables (text never read as markup)."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    from .console import shown

    tables = []
    for caption, (columns, rows) in _rows(result).items():
        table = Table(*columns, title=caption, title_justify="left")
        for row in rows:
            table.add_row(*(Text(shown(_shown(v))) for v in row))
        tables.append(table)
    return Group(*tables)


def html_tables(result: CompareResult) -> str:
    """The tables of :func:`_rows` as a self-contained fragment of the report's markup (its scoped CSS; every
    number's exact value in ``data-value``)."""
    from .report import html

    tables = [html.table(caption, columns, [[html.number(v, percent=isinstance(v, Share)) if i else html.label(v)
                                             for i, v in enumerate(row)]
                                            for row in rows])
              for caption, (columns, rows) in _rows(result).items()]
    body = html.paragraph(summary_line(result)) + "".join(tables)
    return html.fragment(html.section("comparison", "Comparison", body))
