"""DeepFault (Eniser, Gerasimou, Sen — FASE 2019), Algorithm 2, batched.

The gradient of each suspicious neuron's value with respect to the input, on the FULL model, averaged
over the k neurons (lines 5–11), times ``step``, clipped to ±``distance`` (L∞) around the seed, and the
result to the valid range (lines 12–13). For a neuron at an increasing activation's output its
pre-activation is the value ascended, as DeepFault differentiates its Dense layers' outputs.

``options["gradient"]``: ``normalized`` (default) divides each neuron's gradient by its root-mean-square
over the sample's input elements (+1e-5) before the mean, as DeepFault's code at the time of the paper did
(the paper's text is silent); ``raw`` averages the plain gradients. ``iterations`` > 1 repeats the step
with projection (our extension; 1 = the paper). Defaults: step 1, distance 0.1, iterations 1.
"""
from __future__ import annotations

import numpy as np

from .. import graph
from .base import Problem


def run(p: Problem) -> np.ndarray:
    def build():
        tensors = list(dict.fromkeys(p.ascent_tensors().values()))
        outputs = [p.model.output_name, *tensors]
        return p.differentiable(graph.expose_outputs(p.model.scores_only(), tensors)), p.neuron_groups(outputs)

    full, groups = p.once("deepfault", build)
    normalized = p.options.get("gradient", "normalized") == "normalized"
    x = p.x.copy()
    for _ in range(p.iterations):
        grad = (full.normalized_neuron_ascent(x, groups, p.side) if normalized
                else full.neuron_ascent(x, groups, p.side)[0])
        x = p.project(x + p.step * grad)
    p.extra["differentiable"] = full
    return x
