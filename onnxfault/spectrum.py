"""Hit spectra: per neuron, how many samples were (active & passed, active & failed, inactive & passed,
inactive & failed) = (as, af, ns, nf).

A sample *fails* when the model misclassifies it (modes ``all`` and ``class``); in ``target`` mode the
outcome to explain is "predicted as the target class T": a sample fails when it is predicted as T.
A neuron is *active* when its value is strictly greater than the threshold δ. Its value is the element
itself (``element`` granularity) or, for tensors with spatial axes, the mean over them per channel
(``channel``, DeepFault's rule; the same as ``element`` for 1-D tensors).

Counting is vectorized over the batch and every neuron of a layer: no Python loop over either.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .data import Dataset
from .errors import OnnxFaultError
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


def neuron_values(activations: np.ndarray, layer: Layer, granularity: str) -> np.ndarray:
    """``(N, neurons)`` values of one layer for a batch of ``N`` samples."""
    n = len(activations)
    if granularity == "element" or layer.channel_axis is None:
        return activations.reshape(n, -1)
    axis = layer.channel_axis + 1
    spatial = tuple(a for a in range(1, activations.ndim) if a != axis)
    # float64 accumulation: the channel mean's sign must not depend on summation order.
    values = activations.mean(axis=spatial, dtype=np.float64)
    return values.reshape(n, -1)


def count_hits(active: np.ndarray, failed: np.ndarray) -> np.ndarray:
    """``(4, neurons)`` int64 counts (as, af, ns, nf) for one batch: ``active`` is (N, neurons) bool."""
    active_failed = np.count_nonzero(active[failed], axis=0)
    active_all = np.count_nonzero(active, axis=0)
    n_failed = int(np.count_nonzero(failed))
    a_s = active_all - active_failed
    return np.stack([a_s, active_failed, (len(failed) - n_failed) - a_s, n_failed - active_failed]).astype(np.int64)


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
    for flag, value in (("--class", outcome.cls), ("--target", outcome.target)):
        if value is not None and not 0 <= value < num_classes:
            raise OnnxFaultError(f"{flag} {value} is out of range: the model has classes 0..{num_classes - 1}")


def check_labels(dataset: Dataset, num_classes: int) -> None:
    """Every selected label must be a class of the model."""
    if len(dataset.labels) and dataset.labels.max() >= num_classes:
        raise OnnxFaultError(f"the data has label {int(dataset.labels.max())} but the model has only "
                             f"{num_classes} classes (0..{num_classes - 1}); check the data or the model")


def hit_spectrum(model: Model, dataset: Dataset, layers: list[Layer], outcome: Outcome = Outcome(), *,
                 granularity: str = "channel", threshold: float = 0.0, device: str = "auto",
                 on_batch: Callable[[int], None] | None = None) -> Spectrum:
    """One forward pass per batch gives the predictions and every layer's activations; count them."""
    if granularity not in GRANULARITIES:
        raise OnnxFaultError(f"unknown granularity '{granularity}'; use channel or element")
    validate_outcome(outcome, model.num_classes)
    check_labels(dataset, model.num_classes)
    session = model.session(device, [layer.tensor for layer in layers])
    total = sum(layer.neurons(granularity) for layer in layers)
    counts = np.zeros((4, total), np.int64)
    samples = failing = correct = 0
    offsets = np.concatenate([[0], np.cumsum([layer.neurons(granularity) for layer in layers])])
    for x, y in dataset.batches():
        outputs = session.run_named(x)
        predictions = outputs[model.output_name].argmax(axis=-1)
        failed = outcome.failed(predictions, y)
        for layer, start, stop in zip(layers, offsets[:-1], offsets[1:]):
            active = neuron_values(outputs[layer.tensor], layer, granularity) > threshold
            counts[:, start:stop] += count_hits(active, failed)
        samples += len(y)
        failing += int(np.count_nonzero(failed))
        correct += int(np.count_nonzero(predictions == y))
        if on_batch is not None:
            on_batch(len(y))
    return Spectrum(layers, granularity, threshold, outcome, counts, samples, failing, correct)
