"""FGSM (Goodfellow, Shlens, Szegedy — ICLR 2015), L∞: one step of size ``distance`` along the sign of
the cross-entropy gradient on the full model; with ``target`` T it steps down T's cross-entropy.
Default distance 0.1."""
from __future__ import annotations

import numpy as np

from .base import Problem


def run(p: Problem) -> np.ndarray:
    full = p.once("full", lambda: p.differentiable(p.model.scores_only()))
    grad, _ = full.loss_gradient(p.x, p.y, target=p.target, probabilities=p.scores_are_probabilities,
                                side=p.side)
    p.extra["differentiable"] = full
    return p.project(p.x + (p.distance or 0.0) * np.sign(grad))
