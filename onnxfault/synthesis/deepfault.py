"""DeepFault (Eniser, Gerasimou, Sen — FASE 2019), Algorithm 2, batched.

The gradient of each suspicious neuron's value with respect to the input, on the FULL model, averaged
over the k neurons, times ``step`` (for a neuron at an increasing activation's output, its pre-activation
is the value ascended, as DeepFault differentiates its Dense layers' outputs); the change is clipped to ±``distance`` (L∞) around the seed and the
result to the valid range. ``iterations`` > 1 repeats the step with projection (our extension; 1 = the
paper). Defaults: step 1, distance 0.1, iterations 1.
"""
from __future__ import annotations

import numpy as np

from .. import graph
from .base import Problem, register


@register("deepfault", "DeepFault: ascend the mean of the suspicious neurons on the full model (L∞)",
          step=1.0, distance=0.1, iterations=1, epsilon=0.0)
def run(p: Problem) -> np.ndarray:
    def build():
        tensors = list(dict.fromkeys(p.ascent_tensors().values()))
        outputs = [p.model.output_name, *tensors]
        return p.differentiable(graph.expose_outputs(p.model.scores_only(), tensors)), p.neuron_groups(outputs)

    full, groups = p.once("deepfault", build)
    x = p.x.copy()
    for _ in range(p.iterations):
        grad, _ = full.neuron_ascent(x, groups)
        x = p.project(x + p.step * grad)
    p.extra["differentiable"] = full
    return x
