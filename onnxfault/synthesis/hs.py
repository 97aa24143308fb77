"""HS-FGSM (Rashedi & Schupp, ICSOFT 2025), section 4.2 and Algorithm 2: gradient ascent on a sub-model.

The model is cut at the tensor ``cut``, the sub-model's output layer l_i that holds the k suspicious neurons
(``synthesize`` ranks neurons on that layer only, as section 4.1 computes the spectrum only there), and only
that sub-model is converted to torch and differentiated. Each of ``iterations`` steps updates every input by

* ``step_rule="gradient"`` (the paper): x + ε·∇, ∇ the input gradient of the *sum* of the k neurons' values
  (the authors' code sums them; k times the mean gradient of ``deepfault --gradient raw``);
* ``step_rule="sign"``: x + ε·sign(∇), FGSM-style steps of L∞ size ε.

A neuron at an increasing activation's output is ascended through its pre-activation (as ``deepfault``).
``distance`` None (the paper: no bound) leaves the change unbounded, a number keeps it in that L∞ ball; inputs
always stay in the valid range (the authors' code does not clip). Targeted (``target``): neurons from a
targeted spectrum, seeds not of class T. Defaults, the paper's RQ1 settings (section 5.1): gradient steps,
epsilon 1, iterations 5, no L∞ bound.
"""
from __future__ import annotations

import numpy as np

from .. import graph
from ..errors import OnnxFaultError
from ..model import Model
from .base import Problem


def sub_model_layers(model: Model, cut: str | None, layers: str) -> tuple[str, str, list[str]]:
    """(cut, layers to rank, notes) for hs: the paper ranks only the sub-model's output layer (section 4.1).

    No ``cut``: the middle of the candidate layers ``layers`` in graph order, index (n − 1) // 2 (of two
    middles the shallower, so a two-layer net is not cut at its output side), said in a note. ``cut`` with
    ``layers`` "auto": rank the cut tensor only. ``cut`` with named ``layers``: rank those (``run`` checks
    that they lie upstream of the cut)."""
    if cut is not None:
        return cut, cut if layers == "auto" else layers, []
    candidates = model.select_layers(layers)
    middle = (len(candidates) - 1) // 2
    tensor = candidates[middle].tensor
    return tensor, tensor, [f"hs: no --cut given; cut at {tensor}, the middle candidate layer ({middle + 1} of "
                            f"{len(candidates)}); its top neurons are the suspicious ones (choose with --cut)"]


def run(p: Problem) -> np.ndarray:
    cut = p.cut or p.neurons[0].tensor
    rule = p.options.get("step_rule", "gradient")

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
        x = p.project(x + p.epsilon * step_direction(sub, x, groups, len(p.neurons), rule, p.side))
    p.extra["differentiable"] = sub
    p.extra["cut"] = cut
    return x


def step_direction(sub, x: np.ndarray, groups: list, k: int, rule: str, side: dict | None = None) -> np.ndarray:
    """∇ Σ of the k neurons (``gradient``) or its sign (``sign``), per input; ``neuron_ascent`` gives the
    gradient of their mean, and the sum's gradient is k times it; ``side``: the sub-model's other inputs."""
    grad, _ = sub.neuron_ascent(x, groups, side)
    return np.float32(k) * grad if rule == "gradient" else np.sign(grad)
