"""PGD (Madry et al. — ICLR 2018), L∞: ``iterations`` sign steps of size ``step`` on the cross-entropy,
each projected back onto the ``distance`` ball and the valid range; starts at the seed (no random
start, so runs are reproducible). Defaults: distance 0.1, step 0.01, iterations 20."""
from __future__ import annotations

import numpy as np

from .base import Problem


def run(p: Problem) -> np.ndarray:
    full = p.once("full", lambda: p.differentiable(p.model.scores_only()))
    x = p.x.copy()
    for _ in range(p.iterations):
        grad, _ = full.loss_gradient(x, p.y, target=p.target, probabilities=p.scores_are_probabilities,
                                    side=p.side)
        x = p.project(x + p.step * np.sign(grad))
    p.extra["differentiable"] = full
    return x
