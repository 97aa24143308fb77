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

from dataclasses import dataclass, replace

import numpy as np

from .contract import Method, NeuronRequest, Selection, distance_option, iterations_option, option


class HS(Method):
    name = "hs"
    summary = "HS-FGSM: gradient (or sign) steps on the suspicious neurons through a sub-model cut at their layer"
    paper = "Rashedi, Schupp: HS-FGSM (ICSOFT 2025)"
    embeddings = True

    @dataclass(frozen=True)
    class Options:
        epsilon: float = option(1.0, "step factor ε (x + ε·∇, or x + ε·sign ∇ with `step_rule` sign)", above=0)
        distance: float | None = distance_option(None)
        iterations: int = iterations_option(5)
        step_rule: str = option("gradient", "gradient (x + ε·∇, the paper) | sign (x + ε·sign ∇)",
                                choices=("gradient", "sign"))
        cut: str | None = option(None, "tensor to cut the sub-model at, whose neurons are ranked (none: the "
                                 "middle candidate layer)")

    def choose_neurons(self, request: NeuronRequest, options) -> Selection:
        """HS-FGSM ranks the neurons of the sub-model's output layer (its cut) only (section 4.1)."""
        if request.given is not None:
            return super().choose_neurons(request, options)
        cut, layers, notes = sub_model_layers(request.model, options.cut, request.layers)
        chosen = super().choose_neurons(replace(request, layers=layers), options)
        return Selection(chosen.neurons, layers, notes, replace(options, cut=cut))

    def run(self, p):
        cut = p.options.cut or p.neurons[0].tensor
        rule = p.options.step_rule

        def build():
            from .. import graph
            from ..errors import OnnxFaultError

            neuron_tensors = list(dict.fromkeys(n.tensor for n in p.neurons))
            tensors = list(dict.fromkeys(p.ascent_tensors().values()))
            upstream = graph.ancestors(p.model.proto, cut)
            outside = [t for t in neuron_tensors if t not in upstream]
            if outside:
                raise OnnxFaultError(f"`cut` {cut} is not downstream of the suspicious neurons in {outside[0]}; "
                                     f"cut at {outside[0]} or a later tensor", parameter="cut")
            outputs = [cut, *[t for t in tensors if t != cut]]
            return p.differentiable(graph.cut_at(p.model.proto, outputs)), p.neuron_groups(outputs)

        sub, groups = p.once("hs", build)
        x = p.x.copy()
        for _ in range(p.options.iterations):
            x = p.project(x + p.options.epsilon * step_direction(sub, x, groups, len(p.neurons), rule, p.side))
        p.module = sub
        return x


def sub_model_layers(model, cut: str | None, layers: str) -> tuple[str, str, list[str]]:
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
    return tensor, tensor, [f"hs: no `cut` given; cut at {tensor}, the middle candidate layer ({middle + 1} of "
                            f"{len(candidates)}); its top neurons are the suspicious ones (choose with `cut`)"]


def step_direction(sub, x: np.ndarray, groups: list, k: int, rule: str, side: dict | None = None) -> np.ndarray:
    """∇ Σ of the k neurons (``gradient``) or its sign (``sign``), per input; ``neuron_ascent`` gives the
    gradient of their mean, and the sum's gradient is k times it; ``side``: the sub-model's other inputs."""
    grad, _ = sub.neuron_ascent(x, groups, side)
    return np.float32(k) * grad if rule == "gradient" else np.sign(grad)
