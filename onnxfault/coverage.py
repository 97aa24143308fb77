"""``coverage``: how much of a network a set of inputs exercises, by DeepGauge's criteria (Ma et al., ASE 2018)
and DeepXplore's neuron coverage.

Neurons are those of ``localize`` (the same layers, granularity and token rules): a neuron's value on a sample is
the element, or its channel's mean over the spatial axes. Over a set of inputs T:

- **NC(t)** (DeepXplore): the share of neurons whose value is above ``t`` on at least one input of T.
- **TKNC(k)**: the share of neurons that are among the ``k`` largest of their layer on at least one input.
- With boundaries ``[low_n, high_n]`` (each neuron's least and greatest value on a ``reference`` data set):
  **KMNC(k)** cuts each range into ``k`` equal sections and gives the share of the k·N sections some input of
  T falls in (a value equal to ``high_n`` falls in the last); **NBC** is the share of the 2·N corners reached,
  a value below ``low_n`` (lower corner) or above ``high_n`` (upper corner); **SNAC** the share of upper corners.

One forward pass per batch exposes every neuron value at once (``graph.expose_values``, float64); the tallies
are integer counts and bool section maps, which add up over shards, and the boundaries are minima and maxima of
shards, so ``--ray`` gives the single-process numbers exactly.
"""
from __future__ import annotations

import sys
import types
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .data import DataLike, DataOptions, Dataset, as_dataset
from .data.source import class_notes, class_record
from .distributed.sums import counted
from .errors import OnnxFaultError, check_arguments, check_finite, warn
from .graph import expose_values
from .model import GRANULARITIES, Layer, Model, as_model
from .model_forms import ModelLike
from .provenance import stamp
from .results import header, provenance_of, run_inputs
from .spectrum import layer_order_columns, probe_axes, token_rule

CRITERIA = ("nc", "kmnc", "nbc", "snac", "tknc")
NEEDS_BOUNDS = ("kmnc", "nbc", "snac")
NAMES = {"nc": "NC", "kmnc": "KMNC", "nbc": "NBC", "snac": "SNAC", "tknc": "TKNC"}


# ---- the math ---------------------------------------------------------------------------------------------
def value_range(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per neuron (column) the least and greatest value of ``values`` (N, neurons), NaN ignored: +inf and
    -inf for a neuron without a number."""
    low = np.fmin.reduce(values, axis=0, initial=np.inf) if len(values) else np.full(values.shape[1], np.inf)
    high = np.fmax.reduce(values, axis=0, initial=-np.inf) if len(values) else np.full(values.shape[1], -np.inf)
    return low, high


def top_members(values: np.ndarray, sizes: Sequence[int], top: int) -> np.ndarray:
    """(neurons,) int64: on how many rows each neuron is among the ``top`` largest of its layer (the columns of
    ``values`` are the layers' neurons one layer after the other; equal values go to the lower index)."""
    counts = np.zeros(values.shape[1], np.int64)
    start = 0
    for size in sizes:
        block = values[:, start:start + size]
        keep = min(top, size)
        chosen = np.argsort(-np.nan_to_num(block, nan=-np.inf), axis=1, kind="stable")[:, :keep]
        counts[start:start + size] = np.bincount(chosen.ravel(), minlength=size)
        start += size
    return counts


def sections_hit(values: np.ndarray, low: np.ndarray, high: np.ndarray, sections: int) -> np.ndarray:
    """(neurons, sections) bool: which of the ``sections`` equal parts of each neuron's [low, high] some row
    of ``values`` falls in (``high`` itself in the last part; a range of one point is its first part)."""
    neurons = values.shape[1]
    inside = (values >= low) & (values <= high)
    width = high - low
    scale = np.divide(sections, width, out=np.zeros_like(width), where=width > 0)
    position = np.floor((np.where(inside, values, low) - low) * scale)
    index = np.minimum(position.astype(np.int64), sections - 1)
    flat = (np.arange(neurons, dtype=np.int64) * sections)[None, :] + index
    hit = np.zeros(neurons * sections, np.bool_)
    hit[flat[inside]] = True
    return hit.reshape(neurons, sections)


@dataclass
class CoverageCounts:
    """The tallies of one set of inputs: per neuron how many inputs are above ``threshold`` (``above``) and
    in their layer's top ``top`` (``top``), below its boundary ``low`` (``lower``) and above ``high``
    (``upper``), and the KMNC sections reached (``sections``, (neurons, k) bool). All add up over shards."""

    above: np.ndarray
    top: np.ndarray
    lower: np.ndarray | None
    upper: np.ndarray | None
    sections: np.ndarray | None
    samples: int

    def __add__(self, other: "CoverageCounts") -> "CoverageCounts":
        def add(a, b):
            return None if a is None else (a | b if a.dtype == np.bool_ else a + b)
        return CoverageCounts(self.above + other.above, self.top + other.top, add(self.lower, other.lower),
                              add(self.upper, other.upper), add(self.sections, other.sections),
                              self.samples + other.samples)

    def scores(self, known: np.ndarray | None = None) -> dict[str, tuple[int, int]]:
        """(covered, total) per criterion; ``known``: the neurons that have a boundary range."""
        n = len(self.above)
        found = {"nc": (int(np.count_nonzero(self.above)), n), "tknc": (int(np.count_nonzero(self.top)), n)}
        if self.sections is not None:
            upper = int(np.count_nonzero(self.upper))
            found["kmnc"] = (int(np.count_nonzero(self.sections)), int(self.sections.size))
            found["nbc"] = (upper + int(np.count_nonzero(self.lower)), 2 * n)
            found["snac"] = (upper, n)
        return found


def tally(values: np.ndarray, sizes: Sequence[int], threshold: float, top: int,
          bounds: tuple[np.ndarray, np.ndarray] | None, sections: int) -> CoverageCounts:
    """The coverage tallies of one batch of neuron values (N, neurons)."""
    above = np.count_nonzero(values > threshold, axis=0).astype(np.int64)
    tops = top_members(values, sizes, top)
    if bounds is None:
        return CoverageCounts(above, tops, None, None, None, len(values))
    low, high = bounds
    known = low <= high  # a neuron without a number on the reference has no corners
    lower = np.count_nonzero((values < low) & known, axis=0).astype(np.int64)
    upper = np.count_nonzero((values > high) & known, axis=0).astype(np.int64)
    return CoverageCounts(above, tops, lower, upper, sections_hit(values, low, high, sections), len(values))


# ---- the passes (one forward pass per batch; shards add up) -----------------------------------------------
def values_session(model: Model, layers: Sequence[Layer], granularity: str, device: str, preprocessing=None,
                   token_activity: str | None = None):
    """A session returning the class scores and every neuron value of ``layers`` (float64, (N, neurons)), and
    the columns that put those values in layer order; ``preprocessing``: a data set's, for batches as read."""
    probes = [(layer.tensor, probe_axes(layer, granularity)) for layer in layers]
    mask = model.attention_mask.name if model.attention_mask is not None else None
    tokens = {i: (token_activity, mask) for i, layer in enumerate(layers)
              if token_activity is not None and model.is_sequence_layer(layer)}
    proto, order = expose_values(model.scores_only(), probes, tokens)
    sizes = [layer.neurons(granularity) for layer in layers]
    return model.session_for(proto, device, preprocessing), layer_order_columns(order, sizes)


@dataclass(frozen=True)
class _Values:
    """Builds the session exposing every neuron value, and yields them per batch in layer order."""

    layers: tuple[Layer, ...]
    granularity: str
    device: str
    allow_nonfinite: bool
    token_activity: str | None

    def prepare(self, model: Model, dataset: Dataset):
        return values_session(model, self.layers, self.granularity, self.device, dataset.preprocessing,
                              self.token_activity)

    def device_of(self, state) -> str:
        return state[0].device

    def batches(self, state, dataset: Dataset, on_batch):
        session, columns = state
        for _, y, (_, values) in session.scored(dataset, self.allow_nonfinite):
            yield values.reshape(len(y), -1)[:, columns]
            if on_batch is not None:
                on_batch(len(y))


@dataclass(frozen=True)
class RangeCounter(_Values):
    """The reference pass: each neuron's least and greatest value; shards merge by min and max."""

    def count(self, state, dataset: Dataset, on_batch: Callable[[int], None] | None = None):
        low = high = None
        for values in self.batches(state, dataset, on_batch):
            a, b = value_range(values)
            low, high = (a, b) if low is None else (np.fmin(low, a), np.fmax(high, b))
        if low is None:
            size = sum(layer.neurons(self.granularity) for layer in self.layers)
            low, high = np.full(size, np.inf), np.full(size, -np.inf)
        return low, high

    @staticmethod
    def merge(parts: list[tuple]) -> tuple:
        return (np.fmin.reduce([p[0] for p in parts]), np.fmax.reduce([p[1] for p in parts]))


@dataclass(frozen=True)
class CoverageCounter(_Values):
    """The coverage pass: the tallies of :func:`tally` over every batch; shards add up."""

    threshold: float = 0.0
    top: int = 1
    sections: int = 1000
    low: np.ndarray | None = field(default=None, compare=False)
    high: np.ndarray | None = field(default=None, compare=False)

    def count(self, state, dataset: Dataset, on_batch: Callable[[int], None] | None = None):
        sizes = [layer.neurons(self.granularity) for layer in self.layers]
        bounds = None if self.low is None else (self.low, self.high)
        total = tally(np.zeros((0, sum(sizes))), sizes, self.threshold, self.top, bounds, self.sections)
        for values in self.batches(state, dataset, on_batch):
            total = total + tally(values, sizes, self.threshold, self.top, bounds, self.sections)
        return (total,)

    @staticmethod
    def merge(parts: list[tuple]) -> tuple:
        total = parts[0][0]
        for part in parts[1:]:
            total = total + part[0]
        return (total,)


# ---- the result -----------------------------------------------------------------------------------------
@dataclass
class CoverageResult:
    """What ``coverage`` found: per criterion ``(covered, total)`` for the data (``scores``) and, with
    ``inputs``, for the data together with those inputs (``with_inputs``); per layer the data's (``layers``:
    name, neurons, coverage). ``to_json()`` is the ``--json`` file; :func:`onnxfault.load` reads it back."""

    kind = "coverage"

    model: str
    data: str
    reference: str | None
    inputs: str | None
    layers: list[dict]  # name, neurons, and per criterion (covered, total) for the data
    params: dict
    samples: int
    scores: dict[str, tuple[int, int]]
    with_inputs: dict[str, tuple[int, int]] | None = None
    input_samples: int = 0
    device: str = "cpu"
    warnings: list[str] = field(default_factory=list)
    provenance: dict = field(default_factory=dict)

    def ratio(self, criterion: str, with_inputs: bool = False) -> float | None:
        """The coverage by ``criterion`` as a share in [0, 1] (None: not measured)."""
        found = (self.with_inputs if with_inputs else self.scores) or {}
        if criterion not in found:
            return None
        covered, total = found[criterion]
        return covered / total if total else 0.0

    def added(self, criterion: str) -> float | None:
        """What the ``inputs`` add to the data's coverage by ``criterion`` (None without inputs)."""
        if self.with_inputs is None or criterion not in self.scores:
            return None
        return self.ratio(criterion, True) - self.ratio(criterion)

    def to_json(self) -> dict:
        pairs = lambda found: None if found is None else {c: list(v) for c, v in found.items()}  # noqa: E731
        return {**header(self.kind), "model": self.model, "data": self.data, "reference": self.reference,
                "inputs": self.inputs, "samples": self.samples, "input_samples": self.input_samples,
                "device": self.device, "params": dict(self.params), "coverage": pairs(self.scores),
                "coverage_with_inputs": pairs(self.with_inputs),
                "layers": [{**layer, "coverage": pairs(layer["coverage"])} for layer in self.layers],
                "warnings": list(self.warnings), **self.provenance}

    @classmethod
    def from_json(cls, data: dict) -> "CoverageResult":
        pairs = lambda found: None if found is None else {c: tuple(v) for c, v in found.items()}  # noqa: E731
        return cls(data["model"], data["data"], data.get("reference"), data.get("inputs"),
                   [{**layer, "coverage": pairs(layer["coverage"])} for layer in data["layers"]], data["params"],
                   data["samples"], pairs(data["coverage"]), pairs(data.get("coverage_with_inputs")),
                   data.get("input_samples", 0), data.get("device", "cpu"), list(data.get("warnings", [])),
                   provenance_of(data))

    def plot(self):
        """The report's figure of this result: coverage per criterion, per layer and for the whole net (and with
        the inputs)."""
        from .report import result_figure

        return result_figure(self)

    def _report_run(self):
        from .report.results import memory_run

        return memory_run("coverage", self.to_json())

    def _repr_html_(self) -> str:
        from .report import result_html

        return result_html(self)

    def save(self, path: str | Path) -> Path:
        """Write :meth:`to_json` to ``path`` whole (see :mod:`onnxfault.files`)."""
        from .files import write_json

        return write_json(path, self.to_json())

    def lines(self) -> list[str]:
        """The result as the CLI prints it: one line per criterion."""
        out = [f"coverage of {self.samples} samples over {sum(l['neurons'] for l in self.layers)} neurons in "
               f"{len(self.layers)} layers"]
        for criterion in CRITERIA:
            if criterion not in self.scores:
                if self.reference is None and criterion in NEEDS_BOUNDS:
                    out.append(f"  {NAMES[criterion]:<5} n/a (needs a reference data set for the neuron boundaries)")
                continue
            covered, total = self.scores[criterion]
            line = f"  {NAMES[criterion]:<5} {100 * self.ratio(criterion):6.2f} % ({covered}/{total})"
            if self.with_inputs is not None:
                line += f" → {100 * self.ratio(criterion, True):6.2f} % with the inputs (+{100 * self.added(criterion):.2f})"
            out.append(line)
        return out

    def __repr__(self) -> str:
        shown = ", ".join(f"{NAMES[c]} {100 * self.ratio(c):.1f}%" for c in CRITERIA if c in self.scores)
        return f"<CoverageResult {self.samples} samples: {shown}>"


def coverage(model: ModelLike, data: DataLike, *, reference: DataLike | None = None, inputs: DataLike | None = None,
             criteria: Sequence[str] | None = None, layers: str | Sequence[str] = "auto",
             granularity: str = "channel", threshold: float = 0.0, top: int = 1, sections: int = 1000, device: str = "auto", data_options: DataOptions | None = None,
             on_batch: Callable[[int], None] | None = None, output: str | None = None,
             allow_nonfinite: bool = False, ray=None, example_input=None,
             token_activity: str | None = None) -> CoverageResult:
    """NC(``threshold``) and TKNC(``top``) of ``data``, and with a ``reference`` data set (the neuron boundaries)
    KMNC(``sections``), NBC and SNAC (see the module docstring); ``criteria`` keeps some of them (default:
    every one the arguments allow). ``inputs`` (a ``synthesize --out`` folder, or
    any data) are counted together with ``data`` too, to show the coverage they add. The reference is read with
    ``data_options`` less its labels, limit and classes. The other arguments are ``localize``'s."""
    check_arguments(layers=(layers, (str, list, tuple)), granularity=(granularity, str), threshold=(threshold, float),
                    top=(top, int, 1), sections=(sections, int, 1), device=(device, str),
                    output=(output, (str, None)), allow_nonfinite=(allow_nonfinite, bool),
                    token_activity=(token_activity, (str, None)))
    check_finite(threshold=threshold)
    chosen_criteria = _criteria(criteria, reference is not None)
    if granularity not in GRANULARITIES:
        raise OnnxFaultError(f"unknown granularity '{granularity}'; use channel or element", parameter="granularity")
    model = as_model(model, output, example_input)
    chosen = tuple(model.select_layers(layers))
    rule = token_rule(model, token_activity)
    dataset = as_dataset(data, model.data_shape, data_options)
    base = dict(layers=chosen, granularity=granularity, device=device, allow_nonfinite=allow_nonfinite,
                token_activity=rule)
    low = high = None
    if reference is not None and set(chosen_criteria) & set(NEEDS_BOUNDS):
        kept = replace(data_options or DataOptions(), labels=None, limit=None, classes=None)  # the data's own
        try:
            against = as_dataset(reference, model.data_shape, kept)
        except OnnxFaultError as err:
            raise OnnxFaultError(f"the reference data: {err}", parameter="reference") from None
        (low, high), _ = counted(RangeCounter(**base), model, against, ray)
    counter = CoverageCounter(**base, threshold=threshold, top=top, sections=sections, low=low, high=high)
    (counts,), used = counted(counter, model, dataset, ray, on_batch)
    with_inputs, extra = None, 0
    if inputs is not None:
        inputs_data, inputs_options, _ = run_inputs(inputs, data_options)
        added = as_dataset(inputs_data, model.data_shape, inputs_options)
        (more,), _ = counted(counter, model, added, ray)
        with_inputs, extra = _only((counts + more).scores(), chosen_criteria), more.samples
    sizes = [layer.neurons(granularity) for layer in chosen]
    result = CoverageResult(
        model.path, dataset.path, _name(reference), _name(inputs), _layer_scores(chosen, sizes, counts, chosen_criteria),
        {"criteria": list(chosen_criteria), "threshold": threshold, "top": top, "sections": sections,
         "granularity": granularity, "layers": layers if isinstance(layers, str) else list(layers)},
        counts.samples, _only(counts.scores(), chosen_criteria), with_inputs, extra, used,
        [*model.notes, *class_notes(dataset.source)], {**stamp(model), **class_record(dataset.source)})
    warn(result.warnings)
    return result


def _criteria(criteria: Sequence[str] | None, bounded: bool) -> tuple[str, ...]:
    """The criteria to measure: those named (each known; those needing boundaries only with a reference), or
    every one the arguments allow."""
    if criteria is None:
        return CRITERIA if bounded else tuple(c for c in CRITERIA if c not in NEEDS_BOUNDS)
    names = [criteria] if isinstance(criteria, str) else list(criteria)
    for name in names:
        if not isinstance(name, str) or name.lower() not in CRITERIA:
            raise OnnxFaultError(f"unknown coverage criterion {name!r}; use {', '.join(CRITERIA)}", parameter="criteria")
        if name.lower() in NEEDS_BOUNDS and not bounded:
            raise OnnxFaultError(f"{name} measures against neuron boundaries; give `reference`, the data they come "
                                 "from", parameter="criteria")
    return tuple(c for c in CRITERIA if c in {n.lower() for n in names})


def _only(found: dict, criteria: Sequence[str]) -> dict:
    return {c: found[c] for c in criteria if c in found}


def _layer_scores(layers: Sequence[Layer], sizes: list[int], counts: CoverageCounts,
                  criteria: Sequence[str]) -> list[dict]:
    out, start = [], 0
    for layer, size in zip(layers, sizes):
        part = slice(start, start + size)
        own = CoverageCounts(counts.above[part], counts.top[part],
                             None if counts.lower is None else counts.lower[part],
                             None if counts.upper is None else counts.upper[part],
                             None if counts.sections is None else counts.sections[part], counts.samples)
        out.append({"name": layer.tensor, "neurons": size, "coverage": _only(own.scores(), criteria)})
        start += size
    return out


def _name(data) -> str | None:
    return None if data is None else str(data) if isinstance(data, (str, Path)) else type(data).__name__


class _CallableModule(types.ModuleType):
    """``onnxfault.coverage`` is this module once it is imported: calling it runs :func:`coverage`."""

    def __call__(self, *args, **kwargs) -> CoverageResult:
        return coverage(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
