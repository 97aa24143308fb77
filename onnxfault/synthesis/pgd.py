"""PGD (Madry et al. — ICLR 2018), L∞: ``iterations`` sign steps of size ``step`` on the cross-entropy,
each projected back onto the ``distance`` ball and the valid range; starts at the seed (no random
start, so runs are reproducible). Defaults: distance 0.1, step 0.01, iterations 20."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .contract import Method, distance_option, iterations_option, step_option


class PGD(Method):
    name = "pgd"
    summary = "PGD baseline: projected L∞ sign steps on the cross-entropy (untargeted or `target`)"
    paper = "Madry et al.: Towards Deep Learning Models Resistant to Adversarial Attacks (ICLR 2018)"
    uses_neurons = False
    embeddings = True

    @dataclass(frozen=True)
    class Options:
        distance: float | None = distance_option(0.1)
        step: float = step_option(0.01)
        iterations: int = iterations_option(20)

    def run(self, p):
        full = p.once("full", lambda: p.differentiable(p.model.scores_only()))
        x = p.x.copy()
        for _ in range(p.options.iterations):
            grad, _ = full.loss_gradient(x, p.y, target=p.target, probabilities=p.scores_are_probabilities,
                                         side=p.side)
            x = p.project(x + p.options.step * np.sign(grad))
        p.module = full
        return x
