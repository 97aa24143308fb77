"""Seeds: correctly classified inputs, ``samples`` per class drawn with ``seed``: one streamed pass predicts
every sample, a second takes the seeds' inputs (an iterable of batches, read once, keeps its candidates' inputs
during the first pass instead)."""
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
    error unless ``allow_nonfinite``. A data set read once (``dataset.read_once``: an iterable of batches)
    keeps the inputs of every candidate (correctly classified, of a wanted class) as read, in the data's own
    type, until the seeds are drawn; others are read a second time for the seeds' inputs."""
    if samples < 1:
        raise OnnxFaultError(f"`samples` must be at least 1 (got {samples})")
    session = model.session(device, preprocessing=dataset.preprocessing)  # fed the batches as read
    predictions, low, high = [], np.inf, -np.inf
    kept: list[np.ndarray] | None = [] if dataset.read_once else None
    for x, y, (scores, *_) in session.scored(dataset, allow_nonfinite):
        predictions.append(scores.argmax(-1))
        lo, hi = dataset.prepared_range(x)
        low, high = min(low, lo), max(high, hi)
        if kept is not None:
            kept.append(x[_eligible(predictions[-1], y, cls, target)])
    predictions = np.concatenate(predictions)
    labels = dataset.labels
    eligible = _eligible(predictions, labels, cls, target)
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
    x = dataset.take(positions) if kept is None else _kept_inputs(kept, eligible, positions, session, dataset)
    return Seeds(x, labels[positions], positions, (low, high), skipped, predictions[positions])


def _eligible(predictions: np.ndarray, labels: np.ndarray, cls: int | None, target: int | None) -> np.ndarray:
    """Candidates: correctly classified, of class ``cls`` when given, never of class ``target``."""
    eligible = predictions == labels
    if cls is not None:
        eligible &= labels == cls
    if target is not None:
        eligible &= labels != target
    return eligible


def _kept_inputs(kept: list[np.ndarray], eligible: np.ndarray, positions: np.ndarray, session,
                 dataset: Dataset) -> np.ndarray:
    """The prepared inputs at ``positions`` from the candidates' inputs kept in the pass (as the session was
    fed them), exactly as ``dataset.take`` would give them."""
    rows = np.concatenate(kept)[np.searchsorted(np.flatnonzero(eligible), positions)]
    if session.preprocessing is not None:  # kept as read: preprocess as Dataset.batches does
        rows = dataset.preprocessing.apply(rows)
    return np.ascontiguousarray(rows)
