"""The loss every part of onnxfault reports: cross-entropy of class scores."""
from __future__ import annotations

import numpy as np


def cross_entropy(scores: np.ndarray, labels: np.ndarray, probabilities: bool) -> np.ndarray:
    """Per-row cross-entropy of class ``scores`` (probabilities, or logits) against ``labels``."""
    scores = scores.astype(np.float64)
    if probabilities:
        log_p = np.log(np.clip(scores, 1e-12, None))
    else:
        shifted = scores - scores.max(axis=1, keepdims=True)
        log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return -log_p[np.arange(len(labels)), labels]
