"""FGSM (Goodfellow, Shlens, Szegedy — ICLR 2015), L∞: one step of size ``distance`` along the sign of
the cross-entropy gradient on the full model; with ``target`` T it steps down T's cross-entropy.
Default distance 0.1."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .contract import Method, distance_option


class FGSM(Method):
    name = "fgsm"
    summary = "FGSM baseline: one L∞ sign step on the cross-entropy (untargeted or `target`)"
    paper = "Goodfellow, Shlens, Szegedy: Explaining and Harnessing Adversarial Examples (ICLR 2015)"
    uses_neurons = False
    embeddings = True

    @dataclass(frozen=True)
    class Options:
        distance: float | None = distance_option(0.1)

    def run(self, p):
        full = p.once("full", lambda: p.differentiable(p.model.scores_only()))
        grad, _ = full.loss_gradient(p.x, p.y, target=p.target, probabilities=p.scores_are_probabilities,
                                     side=p.side)
        p.module = full
        return p.project(p.x + (p.distance or 0.0) * np.sign(grad))
