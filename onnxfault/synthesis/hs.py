"""HS-FGSM, the sub-model strategy of "efficient hit-spectrum-guided FGSM".

The model is cut at the tensor holding the chosen neurons (``cut``; default the top neuron's layer), and
only that sub-model is converted to torch and differentiated. Each of ``iterations`` steps adds
``epsilon`` · sign(∇ Σ suspicious neurons) (pre-activations for neurons at an increasing activation). The paper puts no bound on the distance: ``distance`` None
keeps that; by default the change stays within L∞ 0.1, and inputs always stay in the valid range.
Targeted (``target``): neurons from a targeted spectrum, seeds not of class T. Defaults: epsilon 0.01,
iterations 10, distance 0.1.
"""
from __future__ import annotations

import numpy as np

from .. import graph
from ..errors import OnnxFaultError
from .base import Problem, register


@register("hs", "HS-FGSM: sign steps on the suspicious neurons through a sub-model cut at their layer",
          step=0.0, distance=0.1, iterations=10, epsilon=0.01)
def run(p: Problem) -> np.ndarray:
    cut = p.cut or p.neurons[0].tensor

    def build():
        neuron_tensors = list(dict.fromkeys(n.tensor for n in p.neurons))
        tensors = list(dict.fromkeys(p.ascent_tensors().values()))
        upstream = graph.ancestors(p.model.proto, cut)
        outside = [t for t in neuron_tensors if t not in upstream]
        if outside:
            raise OnnxFaultError(f"--cut {cut} is not downstream of the suspicious neurons in {outside[0]}; "
                                 f"cut at {outside[0]} or a later tensor")
        outputs = [cut, *[t for t in tensors if t != cut]]
        return p.differentiable(graph.cut_at(p.model.proto, outputs)), p.neuron_groups(outputs)

    sub, groups = p.once("hs", build)
    x = p.x.copy()
    for _ in range(p.iterations):
        grad, _ = sub.neuron_ascent(x, groups)
        x = p.project(x + p.epsilon * np.sign(grad))
    p.extra["differentiable"] = sub
    p.extra["cut"] = cut
    return x
