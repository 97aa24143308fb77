"""Hit spectra: per neuron, how many samples were (active & passed, active & failed, inactive & passed,
inactive & failed) = (as, af, ns, nf).

A sample *fails* when the model misclassifies it (modes ``all`` and ``class``); in ``target`` mode the
outcome to explain is "predicted as the target class T": a sample fails when it is predicted as T.
A neuron is *active* when its value is strictly greater than the threshold δ. Its value is the element
itself (``element`` granularity) or, for tensors with spatial axes, the mean over them per channel
(``channel``, DeepFault's rule; the same as ``element`` for 1-D tensors).

Text models (an input of token ids, :attr:`Model.token_input`) follow a token rule on their (N, T, H) tensors
(``token_activity``): a hidden unit is one neuron, active on a sample when it is active on ``any`` real token
(the default), when its ``mean`` over the real tokens is, or on the first token (``cls``); real tokens are those
the attention mask marks 1, so padding never counts. At ``element`` granularity each (t, h) is a neuron, never
active at a padding position.

Graph surgery adds the neuron values (channel means) and their comparison with δ to the model
(``graph.expose_activity``), so one forward pass per batch yields the predictions and one bool activity
matrix over every neuron of every chosen layer. Counting is two integer column sums (all rows, failed rows)
per few MiB of batches (``HitTally``): no Python loop over neurons, samples or layers.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .data import Dataset
from .distributed.sums import counted
from .errors import OnnxFaultError, check_finite
from .graph import TOKEN_RULES, expose_activity
from .model import GRANULARITIES, Layer, Model

MODES = ("all", "class", "target")


@dataclass(frozen=True)
class Outcome:
    """Which samples count as failing: misclassified (``all``/``class``) or predicted as ``target``."""

    mode: str = "all"
    cls: int | None = None
    target: int | None = None

    def failed(self, predictions: np.ndarray, labels: np.ndarray) -> np.ndarray:
        if self.mode == "target":
            return predictions == self.target
        return predictions != labels


def probe_axes(layer: Layer, granularity: str) -> tuple[int, ...]:
    """Batch-inclusive axes averaged into one neuron value: the spatial axes for ``channel``, else none."""
    if granularity == "element" or layer.channel_axis is None:
        return ()
    return tuple(a + 1 for a in range(len(layer.shape)) if a != layer.channel_axis)


def column_hits(active: np.ndarray) -> np.ndarray:
    """How many rows of the (N, neurons) bool matrix ``active`` each neuron is active in: integer column sums
    of its bytes (0 or 1), in uint16 when N < 2¹⁶ (exact, and numpy's cheapest sum), else int64."""
    return np.asarray(active, np.bool_).view(np.uint8).sum(axis=0, dtype=np.uint16 if len(active) < 2**16 else np.int64)


def count_hits(active: np.ndarray, failed: np.ndarray) -> np.ndarray:
    """``(4, neurons)`` int64 counts (as, af, ns, nf) for one batch: ``active`` is (N, neurons) bool."""
    failing = int(np.count_nonzero(failed))
    a_f = column_hits(active[failed]).astype(np.int64)
    a_s = column_hits(active).astype(np.int64) - a_f
    return np.stack([a_s, a_f, (len(failed) - failing) - a_s, failing - a_f])


@dataclass
class Spectrum:
    """Counts for every neuron of ``layers``, concatenated in layer order (flat C-order index within)."""

    layers: list[Layer]
    granularity: str
    threshold: float
    outcome: Outcome
    counts: np.ndarray  # (4, total neurons): as, af, ns, nf
    samples: int
    failing: int
    correct: int
    device: str = "cpu"
    token_activity: str | None = None  # the token rule of a text model's (N, T, H) layers

    @property
    def offsets(self) -> np.ndarray:
        sizes = [layer.neurons(self.granularity) for layer in self.layers]
        return np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)

    @property
    def as_(self) -> np.ndarray:
        return self.counts[0]

    @property
    def af(self) -> np.ndarray:
        return self.counts[1]

    @property
    def ns(self) -> np.ndarray:
        return self.counts[2]

    @property
    def nf(self) -> np.ndarray:
        return self.counts[3]

    def layer_of(self, flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(layer number, index within the layer) of concatenated neuron positions."""
        offsets = self.offsets
        layer = np.searchsorted(offsets, flat, side="right") - 1
        return layer, flat - offsets[layer]


def validate_outcome(outcome: Outcome, num_classes: int) -> None:
    if outcome.mode not in MODES:
        raise OnnxFaultError(f"unknown mode '{outcome.mode}'; use one of {', '.join(MODES)}")
    for flag, value in (("`cls`", outcome.cls), ("`target`", outcome.target)):
        if value is not None and not 0 <= value < num_classes:
            raise OnnxFaultError(f"{flag} {value} is out of range: the model has classes 0..{num_classes - 1}")


def check_labels(dataset: Dataset, num_classes: int, model: Model | None = None) -> None:
    """Every selected label must be a class of the model. When one is not and ``model`` is given, one forward
    pass tells a model that declares fewer classes than it computes (then the error names that cause)."""
    if len(dataset.labels) and dataset.labels.max() >= num_classes:
        most = int(dataset.labels.max())
        width = model.computed_classes() if model is not None else None
        if width is not None and width != num_classes:
            raise OnnxFaultError(f"the model declares {num_classes} classes for its output '{model.output_name}' but "
                                 f"computes {width}, and the data's labels go up to {most}: its declared output "
                                 "shape is wrong; fix the model's output shape (or its export)")
        raise OnnxFaultError(f"the data has label {most} but the model has only "
                             f"{num_classes} classes (0..{num_classes - 1}); check the data or the model")


def hit_spectrum(model: Model, dataset: Dataset, layers: list[Layer], outcome: Outcome = Outcome(), *,
                 granularity: str = "channel", threshold: float = 0.0, device: str = "auto",
                 on_batch: Callable[[int], None] | None = None, allow_nonfinite: bool = False,
                 ray=None, token_activity: str | None = None) -> Spectrum:
    """One forward pass per batch gives the predictions and every layer's activity; count them. NaN or
    infinite class scores are an error unless ``allow_nonfinite``. ``ray`` (a
    :class:`~onnxfault.distributed.RayOptions`) counts shards of the data on Ray workers instead.
    ``token_activity`` (``any``, ``mean`` or ``cls``; default ``any``) is the token rule of a text model's
    (N, T, H) layers (see the module's docstring); a model without token ids takes none."""
    check_finite(threshold=threshold)
    if granularity not in GRANULARITIES:
        raise OnnxFaultError(f"unknown granularity '{granularity}'; use channel or element")
    rule = token_rule(model, token_activity)
    validate_outcome(outcome, model.num_classes)
    check_labels(dataset, model.num_classes, model)
    counter = SpectrumCounter(tuple(layers), granularity, threshold, outcome, device, allow_nonfinite, rule)
    (counts, samples, failing, correct), used = counted(counter, model, dataset, ray, on_batch)
    return Spectrum(layers, granularity, threshold, outcome, counts, samples, failing, correct, used, rule)


def token_rule(model: Model, token_activity: str | None) -> str | None:
    """The token rule for ``model``: ``token_activity`` (default ``any``) for a text model, None for others
    (for which naming one is an error)."""
    if token_activity is not None and token_activity not in TOKEN_RULES:
        raise OnnxFaultError(f"unknown token activity '{token_activity}'; use one of {', '.join(TOKEN_RULES)}")
    if model.token_input is None:
        if token_activity is not None:
            raise OnnxFaultError("token_activity applies to text models (an integer input of token ids that looks "
                                 "up an embedding); this model has none, so leave it out")
        return None
    return token_activity or "any"


@dataclass(frozen=True)
class SpectrumCounter:
    """One hit-spectrum pass: ``prepare`` builds the session once, ``count`` counts one data set (or shard)
    into (counts in layer order, samples, failing, correct); counts of disjoint shards add up."""

    layers: tuple[Layer, ...]
    granularity: str
    threshold: float
    outcome: Outcome
    device: str
    allow_nonfinite: bool
    token_activity: str | None = None

    def prepare(self, model: Model, dataset: Dataset):
        probes = [(layer.tensor, probe_axes(layer, self.granularity)) for layer in self.layers]
        mask = model.attention_mask.name if model.attention_mask is not None else None
        tokens = {i: (self.token_activity, mask) for i, layer in enumerate(self.layers)
                  if self.token_activity is not None and model.is_sequence_layer(layer)}
        proto, column_order = expose_activity(model.scores_only(), probes, self.threshold, tokens)
        sizes = [layer.neurons(self.granularity) for layer in self.layers]
        return model.session_for(proto, self.device, dataset.preprocessing), layer_order_columns(column_order, sizes)

    def device_of(self, state) -> str:
        return state[0].device

    def count(self, state, dataset: Dataset, on_batch: Callable[[int], None] | None = None):
        session, columns = state
        tally = HitTally(len(columns), self.outcome)
        for _, y, (scores, active) in session.scored(dataset, self.allow_nonfinite):
            tally.add(scores, active, y)
            if on_batch is not None:
                on_batch(len(y))
        counts = tally.counts()
        return counts[:, columns], tally.samples, tally.failing, tally.correct  # activity columns come grouped by dtype


HELD_BYTES = 1 << 22  # batches held back and counted together hold less than this


class HitTally:
    """Adds up batches of (class scores, activity, labels) into hit counts. Batches are held as they came out
    of onnxruntime (no copy) while they hold less than ``held_bytes`` (scores and activity) and 2¹⁶ rows, then
    counted in one go: the counts are those of batch by batch, at the cost of a few appends per batch. A batch
    of ``held_bytes`` or more is counted at once, so big activity is never held longer than before."""

    def __init__(self, neurons: int, outcome: Outcome, held_bytes: int = HELD_BYTES):
        self.outcome, self.held_bytes = outcome, held_bytes
        self.total = np.zeros((4, neurons), np.int64)
        self.samples = self.failing = self.correct = 0
        self._held: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._rows = self._bytes = 0

    def add(self, scores: np.ndarray, active: np.ndarray, labels: np.ndarray) -> None:
        """One batch: scores (N, classes), activity (N, …) bool, labels (N,)."""
        size = scores.nbytes + active.nbytes
        if self._rows + len(labels) >= 2**16 or self._bytes + size > self.held_bytes:
            self._count()
        self._held.append((scores, active, labels))
        self._rows += len(labels)
        self._bytes += size
        if self._bytes >= self.held_bytes:  # a batch this big alone is counted at once, not held
            self._count()

    def counts(self) -> np.ndarray:
        """``(4, neurons)`` int64 (as, af, ns, nf) of every batch added."""
        self._count()
        return self.total

    def _count(self) -> None:
        if not self._held:
            return
        scores, active, labels = (np.concatenate(part) if len(self._held) > 1 else part[0]
                                  for part in zip(*self._held))
        self._held, self._rows, self._bytes = [], 0, 0
        predictions = scores.argmax(axis=-1)
        failed = self.outcome.failed(predictions, labels)
        self.total += count_hits(active.reshape(len(labels), -1), failed)
        self.samples += len(labels)
        self.failing += int(np.count_nonzero(failed))
        self.correct += int(np.count_nonzero(predictions == labels))


def layer_order_columns(column_order: list[int], sizes: list[int]) -> np.ndarray:
    """Indices that put activity columns (probe blocks in ``column_order``) back into layer order."""
    starts = np.concatenate([[0], np.cumsum([sizes[i] for i in column_order])])
    where = {probe: start for probe, start in zip(column_order, starts)}
    return np.concatenate([np.arange(where[i], where[i] + size) for i, size in enumerate(sizes)]).astype(np.int64)
