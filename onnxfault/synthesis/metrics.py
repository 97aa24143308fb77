"""One metrics schema for every synthesis method (the ``report.json`` numbers)."""
from __future__ import annotations

import numpy as np

from ..localization import SuspiciousNeuron
from ..loss import cross_entropy
from ..model import Layer, Model
from ..spectrum import probe_axes


def neuron_values(outputs: dict[str, np.ndarray], neurons: list[SuspiciousNeuron], layers: dict[str, Layer],
                  granularity: str) -> np.ndarray:
    """(N, k) float64 values of the suspicious neurons (channel means or elements)."""
    values = {}  # per tensor, computed once however many of its neurons are suspicious
    for tensor in dict.fromkeys(n.tensor for n in neurons):
        act = outputs[tensor]
        axes = probe_axes(layers[tensor], granularity)
        value = act.mean(axis=axes, dtype=np.float64) if axes else act.astype(np.float64)
        values[tensor] = value.reshape(len(act), -1)
    return np.stack([values[n.tensor][:, n.index] for n in neurons], axis=1)


def stats(values: np.ndarray) -> dict:
    return {"mean": float(values.mean()), "max": float(values.max())}


def distances(original: np.ndarray, synthesized: np.ndarray) -> dict[str, np.ndarray]:
    """Per-sample L0 (changed input elements), L1, L2 and L∞ of the change (float64, one value per sample)."""
    delta = (synthesized.astype(np.float64) - original.astype(np.float64)).reshape(len(original), -1)
    return {"l0": np.count_nonzero(delta, axis=1).astype(np.float64), "l1": np.abs(delta).sum(axis=1),
            "l2": np.sqrt((delta ** 2).sum(axis=1)), "linf": np.abs(delta).max(axis=1)}


def measure(model: Model, original: np.ndarray, synthesized: np.ndarray, labels: np.ndarray, before: np.ndarray,
            neurons: list[SuspiciousNeuron], layers: dict[str, Layer], granularity: str, target: int | None,
            probabilities: bool, device: str = "auto", size: int = 256, fed=None) -> tuple[dict, np.ndarray]:
    """Metrics and the predictions after, from ``size`` samples at a time (memory stays bounded whatever the
    number of seeds). ``before`` are the seeds' predictions at selection. Per-sample values are kept (a few
    numbers per sample) and reduced over all samples at the end, so every number is the one a single pass
    gives. Without ``neurons`` (fgsm, pgd, patch) the seeds are not run again: ``activation_increase`` is None.
    ``fed(inputs, part)`` turns a slice of inputs into what the model is fed (default: as they are; a text
    model's embeddings go with their attention mask)."""
    session = model.session(device, list(dict.fromkeys(n.tensor for n in neurons)))
    fed = fed or (lambda x, part: x[part])
    count = len(original)
    after = np.empty(count, np.int64)
    loss = np.empty(count, np.float64)
    change = {key: np.empty(count, np.float64) for key in ("l0", "l1", "l2", "linf")}
    increase = np.empty((count, len(neurons)), bool)
    for start in range(0, count, size):
        part = slice(start, start + size)
        outputs = session.run_named(fed(synthesized, part))
        after[part] = outputs[model.output_name].argmax(-1)
        loss[part] = cross_entropy(outputs[model.output_name], labels[part], probabilities)
        for key, values in distances(original[part], synthesized[part]).items():
            change[key][part] = values
        if neurons:
            increase[part] = neuron_values(outputs, neurons, layers, granularity) > \
                neuron_values(session.run_named(fed(original, part)), neurons, layers, granularity)
    correct_before, correct_after = before == labels, after == labels
    metrics = {
        "accuracy_before": float(correct_before.mean()),
        "accuracy_after": float(correct_after.mean()),
        "loss_after": float(loss.mean()),
        "success_rate": float((correct_before & ~correct_after).mean()),
        "target_rate": None if target is None else float((after == target).mean()),
        "target_rate_before": None if target is None else float((before == target).mean()),
        "distance": {key: stats(values) for key, values in change.items()},
        "activation_increase": float(increase.mean()) if neurons else None,
    }
    return metrics, after
