"""DeepFault (Eniser, Gerasimou, Sen — FASE 2019), Algorithm 2, batched.

The gradient of each suspicious neuron's value with respect to the input, on the FULL model, averaged
over the k neurons (lines 5–11), times ``step``, clipped to ±``distance`` (L∞) around the seed, and the
result to the valid range (lines 12–13). For a neuron at an increasing activation's output its
pre-activation is the value ascended, as DeepFault differentiates its Dense layers' outputs.

``gradient``: ``normalized`` (default) divides each neuron's gradient by its root-mean-square
over the sample's input elements (+1e-5) before the mean, as DeepFault's code at the time of the paper did
(the paper's text is silent); ``raw`` averages the plain gradients. ``iterations`` > 1 repeats the step
with projection (our extension; 1 = the paper). Defaults: step 1, distance 0.1, iterations 1.
"""
from __future__ import annotations

from dataclasses import dataclass

from .contract import Method, distance_option, iterations_option, option, step_option


class DeepFault(Method):
    name = "deepfault"
    summary = "DeepFault: ascend the mean of the suspicious neurons on the full model (L∞)"
    paper = "Eniser, Gerasimou, Sen: DeepFault: Fault Localization for Deep Neural Networks (FASE 2019)"
    embeddings = True

    @dataclass(frozen=True)
    class Options:
        step: float = step_option(1.0)
        distance: float | None = distance_option(0.1)
        iterations: int = iterations_option(1)
        gradient: str = option("normalized", "normalized (each neuron's gradient divided by its RMS, as "
                               "DeepFault's code) | raw", choices=("normalized", "raw"))

    def run(self, p):
        from .. import graph

        def build():
            tensors = list(dict.fromkeys(p.ascent_tensors().values()))
            outputs = [p.model.output_name, *tensors]
            return p.differentiable(graph.expose_outputs(p.model.scores_only(), tensors)), p.neuron_groups(outputs)

        full, groups = p.once("deepfault", build)
        normalized = p.options.gradient == "normalized"
        x = p.x.copy()
        for _ in range(p.options.iterations):
            grad = (full.normalized_neuron_ascent(x, groups, p.side) if normalized
                    else full.neuron_ascent(x, groups, p.side)[0])
            x = p.project(x + p.options.step * grad)
        p.module = full
        return x
