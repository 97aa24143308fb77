"""DeepXplore (Pei, Cao, Yang, Jana — SOSP 2017) on one model, after the authors' code
(github.com/peikexin9/deepxplore, ``gen_diff.py``): per seed, an uncovered neuron n is drawn and the seed is moved
up the gradient of

    obj = −weight_diff · score_original + weight_nc · value_n

(the class score before the softmax; with one model the differential term is the model's own prediction), the
gradient normalised by its root-mean-square (g / (√mean(g²) + 1e-5)) and then shaped by a domain constraint:
``light`` (every element moves by 10⁴ · mean(g), lighting up or down), ``occl`` (only the ``occlusion`` rectangle
at ``corner`` moves), ``blackout`` (a random ``occlusion``-sized patch is set to move by −1 when the gradient's mean
there is negative, else nothing moves). x ← x + step · g, clipped to the valid range, for up to ``iterations``
steps, stopping at the first step the prediction changes; the coverage table (DeepXplore's: each layer's output
scaled to [0, 1] by its min and max, a neuron covered above ``threshold``) is updated with each input that
changed the prediction. The table and the random draws belong to the chunk (``--batch-size`` seeds), so Ray gives
the same inputs. Defaults: the authors' MNIST command (``blackout 1 0.1 10 … 50 0``), the setting DeepSensor's
RQ1 used ("blackout", guided by NC).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .contract import Method, iterations_option, option, step_option
from .fuzzing import cover, exposed_module, neuron_groups, normalized, spatial_axes

CONSTRAINTS = ("light", "occl", "blackout")


def constrained(grad: np.ndarray, constraint: str, corner: tuple[int, int], size: tuple[int, int],
                rng: np.random.Generator) -> np.ndarray:
    """The authors' ``constraint_light``, ``constraint_occl`` and ``constraint_black`` on one input's gradient."""
    if constraint == "light":
        return np.full_like(grad, 1e4 * grad.mean())
    h_axis, w_axis = spatial_axes(grad.shape)
    height, width = grad.shape[h_axis], grad.shape[w_axis]
    if constraint == "blackout":
        corner = (int(rng.integers(0, max(height - size[0], 0) + 1)), int(rng.integers(0, max(width - size[1], 0) + 1)))
    window = [slice(None)] * grad.ndim
    window[h_axis] = slice(corner[0], corner[0] + size[0])
    window[w_axis] = slice(corner[1], corner[1] + size[1])
    out = np.zeros_like(grad)
    if constraint == "occl":
        out[tuple(window)] = grad[tuple(window)]
    elif grad[tuple(window)].mean() < 0:
        out[tuple(window)] = -1.0
    return out


class DeepXplore(Method):
    name = "deepxplore"
    summary = "DeepXplore baseline (one model): away from the predicted class towards an uncovered neuron, " \
              "under a lighting, occlusion or blackout constraint"
    paper = "Pei, Cao, Yang, Jana: DeepXplore: Automated Whitebox Testing of Deep Learning Systems (SOSP 2017)"
    uses_neurons = False
    metrics = ((("changed_seeds",), "seeds whose prediction changed", "max", False),
               (("steps",), "gradient steps", None, False),
               (("coverage_after",), "neuron coverage (DeepXplore's)", "max", True))

    @dataclass(frozen=True)
    class Options:
        constraint: str = option("blackout", "domain constraint: light, occl or blackout", choices=CONSTRAINTS)
        weight_diff: float = option(1.0, "weight of the predicted class's score (pushed down)", minimum=0)
        weight_nc: float = option(0.1, "weight of the uncovered neuron's value (pushed up)", minimum=0)
        step: float = step_option(10.0)
        iterations: int = iterations_option(50)
        threshold: float = option(0.0, "a neuron is covered when its scaled value is above this", minimum=0,
                                  maximum=1)
        occlusion: tuple[float, float] = option((10.0, 10.0), "occl/blackout: the rectangle's height,width",
                                                minimum=1)
        corner: tuple[float, float] = option((0.0, 0.0), "occl: the rectangle's top,left", minimum=0)

    def run(self, p):
        o = p.options
        if o.constraint != "light" and spatial_axes(p.x.shape) is None:
            from ..errors import OnnxFaultError

            raise OnnxFaultError(f"deepxplore: `constraint` {o.constraint} moves a rectangle of an image, and the "
                                 f"model's input is {p.x.shape[1:]} per sample; use `constraint` light",
                                 parameter="constraint")
        layers = p.model.select_layers("auto")
        module, groups, axes = p.once("deepxplore", lambda: exposed_module(p, layers))
        total = sum(layer.neurons("channel") for layer in layers)
        times = np.zeros(total, np.int64)
        size = (int(o.occlusion[0]), int(o.occlusion[1]))
        corner = (int(o.corner[0]), int(o.corner[1]))
        out = np.empty_like(p.x)
        changed = steps = 0
        for i in range(len(p.x)):
            side = {k: v[i:i + 1] for k, v in p.side.items()}
            rng = np.random.default_rng([p.seed, p.first + i])
            x = p.x[i:i + 1].copy()
            scores = module.outputs(x, side)[0][0]
            label = int(scores.argmax())
            uncovered = np.flatnonzero(times == 0)
            neuron = int(rng.choice(uncovered if len(uncovered) else np.arange(total)))
            weights = np.zeros(len(scores))
            weights[label] = -o.weight_diff
            chosen = neuron_groups(groups, np.array([neuron]))
            for _ in range(o.iterations):
                grad = module.linear_objective(x, weights, chosen, np.array([o.weight_nc]),
                                               probabilities=p.scores_are_probabilities, side=side)
                x = np.clip(x + o.step * constrained(normalized(grad), o.constraint, corner, size, rng),
                            *p.clip).astype(np.float32)
                steps += 1
                outputs = module.outputs(x, side)
                if int(outputs[0][0].argmax()) != label:
                    cover(times, outputs, axes, o.threshold)
                    changed += 1
                    break
            out[i] = x[0]
        p.module = module
        p.stats = {"changed_seeds": changed, "steps": steps, "covered": int(np.count_nonzero(times)),
                   "neurons": total}
        return out

    def merge(self, parts: list):
        return {"changed_seeds": sum(part["changed_seeds"] for part in parts),
                "steps": sum(part["steps"] for part in parts),
                "coverage_after": [part["covered"] / part["neurons"] if part["neurons"] else 0.0 for part in parts]}

    def summarize(self, stats, problem) -> dict:
        return {"changed_seeds": stats["changed_seeds"], "steps": stats["steps"],
                "coverage_after": float(np.mean(stats["coverage_after"])) if stats["coverage_after"] else 0.0}

    def summary_lines(self, report: dict) -> list[str]:
        return [f"{report['changed_seeds']} seeds changed their prediction in {report['steps']} gradient steps; "
                f"DeepXplore's neuron coverage {100 * report['coverage_after']:.1f} % (mean over chunks)"]
