"""Seeds: correctly classified inputs, ``samples`` per class drawn with ``seed``, in two streamed passes."""
from __future__ import annotations

import numpy as np

from ..data import Dataset
from ..errors import OnnxFaultError
from ..model import Model


def choose_seeds(model: Model, dataset: Dataset, *, samples: int, seed: int, cls: int | None = None,
                 target: int | None = None, device: str = "auto") -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple]:
    """(x, y, positions in the data set, (min, max) of all data values) for the chosen seeds.

    Seeds are correctly classified; with ``cls`` only of class ``cls``; with ``target`` never of class
    ``target``. Every class present gets ``samples`` seeds (fewer if it has fewer)."""
    if samples < 1:
        raise OnnxFaultError(f"--samples must be at least 1 (got {samples})")
    session = model.session(device)
    predictions, low, high = [], np.inf, -np.inf
    for x, _ in dataset.batches():
        predictions.append(session.run(x)[0].argmax(-1))
        low, high = min(low, float(x.min())), max(high, float(x.max()))
    predictions = np.concatenate(predictions)
    labels = dataset.labels
    eligible = predictions == labels
    if target is not None:
        eligible &= labels != target
    classes = [cls] if cls is not None else sorted(set(labels[labels != target].tolist()) if target is not None
                                                   else set(labels.tolist()))
    rng = np.random.default_rng(seed)
    chosen = []
    for c in classes:
        candidates = np.flatnonzero(eligible & (labels == c))
        if not len(candidates):
            raise OnnxFaultError(f"no correctly classified sample of class {c} to start from; "
                                 "use more data or another class")
        chosen.append(np.sort(rng.choice(candidates, size=min(samples, len(candidates)), replace=False)))
    positions = np.sort(np.concatenate(chosen))
    return dataset.take(positions), labels[positions], positions, (low, high)
