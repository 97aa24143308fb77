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


def distances(original: np.ndarray, synthesized: np.ndarray) -> dict:
    """Per-sample L0 (changed input elements), L1, L2 and L∞ of the change: mean and max."""
    delta = (synthesized.astype(np.float64) - original.astype(np.float64)).reshape(len(original), -1)
    return {"l0": stats(np.count_nonzero(delta, axis=1).astype(np.float64)),
            "l1": stats(np.abs(delta).sum(axis=1)), "l2": stats(np.sqrt((delta ** 2).sum(axis=1))),
            "linf": stats(np.abs(delta).max(axis=1))}


def measure(model: Model, original: np.ndarray, synthesized: np.ndarray, labels: np.ndarray,
            neurons: list[SuspiciousNeuron], layers: dict[str, Layer], granularity: str, target: int | None,
            probabilities: bool, device: str = "auto") -> tuple[dict, np.ndarray, np.ndarray]:
    """Metrics, and the predictions before and after."""
    tensors = list(dict.fromkeys(n.tensor for n in neurons))
    session = model.session(device, tensors)
    before, after = session.run_named(original), session.run_named(synthesized)
    pred_before = before[model.output_name].argmax(-1)
    pred_after = after[model.output_name].argmax(-1)
    correct_before, correct_after = pred_before == labels, pred_after == labels
    increase = neuron_values(after, neurons, layers, granularity) > neuron_values(before, neurons, layers, granularity)
    metrics = {
        "accuracy_before": float(correct_before.mean()),
        "accuracy_after": float(correct_after.mean()),
        "loss_after": float(cross_entropy(after[model.output_name], labels, probabilities).mean()),
        "success_rate": float((correct_before & ~correct_after).mean()),
        "target_rate": None if target is None else float((pred_after == target).mean()),
        "target_rate_before": None if target is None else float((pred_before == target).mean()),
        "distance": distances(original, synthesized),
        "activation_increase": float(increase.mean()),
    }
    return metrics, pred_before, pred_after
