"""Seeds: correctly classified inputs, ``samples`` per class drawn with ``seed``, in two streamed passes."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..data import Dataset
from ..errors import OnnxFaultError
from ..model import Model


@dataclass
class Seeds:
    """The chosen seeds (model inputs and labels), their positions in the data set, the (min, max) of all
    data values, the classes skipped because none of their samples is correctly classified, and the seeds'
    predictions (equal to ``y``, as seeds are correctly classified)."""

    x: np.ndarray
    y: np.ndarray
    positions: np.ndarray
    data_range: tuple[float, float]
    skipped: list[int] = field(default_factory=list)
    predictions: np.ndarray | None = None

    def warnings(self) -> list[str]:
        if not self.skipped:
            return []
        listed = ", ".join(map(str, self.skipped))
        return [f"class{'es' if len(self.skipped) > 1 else ''} {listed} skipped: no correctly classified sample to "
                "start from"]


def choose_seeds(model: Model, dataset: Dataset, *, samples: int, seed: int, cls: int | None = None,
                 target: int | None = None, device: str = "auto", allow_nonfinite: bool = False) -> Seeds:
    """Correctly classified seeds: with ``cls`` only of class ``cls``; with ``target`` never of class
    ``target``. Every class present gets ``samples`` seeds (fewer if it has fewer); a class with none is
    skipped (an error for ``cls``, or when no class has a seed). NaN or infinite class scores are an
    error unless ``allow_nonfinite``."""
    if samples < 1:
        raise OnnxFaultError(f"--samples must be at least 1 (got {samples})")
    session = model.session(device, preprocessing=dataset.preprocessing)  # fed the batches as read
    predictions, low, high = [], np.inf, -np.inf
    for x, _, (scores, *_) in session.scored(dataset, allow_nonfinite):
        predictions.append(scores.argmax(-1))
        lo, hi = dataset.prepared_range(x)
        low, high = min(low, lo), max(high, hi)
    predictions = np.concatenate(predictions)
    labels = dataset.labels
    eligible = predictions == labels
    if target is not None:
        eligible &= labels != target
    classes = [cls] if cls is not None else sorted(set(labels[labels != target].tolist()) if target is not None
                                                   else set(labels.tolist()))
    rng = np.random.default_rng(seed)
    chosen, skipped = [], []
    for c in classes:
        candidates = np.flatnonzero(eligible & (labels == c))
        if not len(candidates):
            skipped.append(c)
            continue
        chosen.append(np.sort(rng.choice(candidates, size=min(samples, len(candidates)), replace=False)))
    if not chosen:
        which = f"of class {cls}" if cls is not None else "of any class"
        raise OnnxFaultError(f"no correctly classified sample {which} to start from; use more data or another class")
    positions = np.sort(np.concatenate(chosen))
    return Seeds(dataset.take(positions), labels[positions], positions, (low, high), skipped, predictions[positions])
