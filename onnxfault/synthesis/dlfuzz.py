"""DLFuzz (Guo, Jiang, Zhang, Chen, Sun — ESEC/FSE 2018): differential fuzzing that mutates a seed along the
gradient of

    obj = predict_weight · Σ_{c ∈ top-k others} score_c − score_original + neuron_weight · Σ_{n ∈ chosen} ±value_n

(scores before the softmax; the k classes scored highest after the original one; ``neurons_to_cover``
neurons picked by a strategy), normalised by its root-mean-square (g / (√mean(g²) + 1e-5)) and scaled by ``step``:
x ← x + step · g / (√mean(g²) + 1e-5). As in the authors' code (github.com/turned2670/DLFuzz), each seed starts a
queue; a queued input is mutated ``iterations`` times, each mutation that raises the neuron coverage of the chunk
by more than 0.01 / (i + 1) (i: the seed's position) while its L2 distance stays under ``max_change`` of the
seed's L2 norm joins the queue, and a mutation predicted as another class than its queued input is an
adversarial input. Neuron coverage is DLFuzz's: a neuron (a channel's mean) is covered when its value, scaled to
[0, 1] by the min and max of its layer's output on that input, is above ``threshold``.

The strategies: ``often`` (neurons drawn with probability ∝ how often they were covered), ``rarely`` (∝ max −
that), ``weights`` (drawn from the 10 % of neurons whose incoming weights have the largest positive mean; the
authors' README runs this one), ``threshold`` (neurons whose scaled value is just above the threshold, pushed
up, and just below, pushed down) and ``random`` (uncovered neurons). Each seed keeps one input: its first
adversarial one, else its last mutation. Mutations stay in the valid range (the authors' did not clip). The
coverage table is the chunk's (``--batch-size`` seeds): chunks are the same here and on Ray.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .contract import Method, iterations_option, option, step_option
from .fuzzing import cover, exposed_module, neuron_groups, normalized, scaled_values

STRATEGIES = ("often", "rarely", "weights", "threshold", "random")
MAX_QUEUE = 50  # mutations queued per seed at most (the authors' queue is unbounded)


def class_weights(scores: np.ndarray, top: int, predict_weight: float) -> tuple[np.ndarray, int]:
    """The weight of each class score in the objective for one input's ``scores``: −1 for its predicted class,
    ``predict_weight`` for the ``top`` classes scored highest after it; and the predicted class."""
    order = np.argsort(-scores, kind="stable")
    weights = np.zeros(len(scores))
    weights[order[1:1 + top]] = predict_weight
    weights[order[0]] = -1.0
    return weights, int(order[0])


def choose(strategy: str, count: int, times: np.ndarray, scaled: np.ndarray, threshold: float,
           heavy: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``count`` neurons to cover (flat indices) and the sign each is pushed with, by ``strategy``."""
    n = len(times)
    count = min(count, n)
    if strategy == "threshold":
        above = np.flatnonzero((scaled > threshold) & (scaled < threshold + 0.25))[: count // 2]
        below = np.flatnonzero((scaled < threshold) & (scaled > threshold - 0.2))[: count - count // 2]
        if len(above) + len(below):
            return np.concatenate([above, below]), np.concatenate([np.ones(len(above)), -np.ones(len(below))])
        strategy = "random"
    if strategy == "weights" and len(heavy):
        picked = rng.choice(heavy, size=min(count, len(heavy)), replace=False)
        return picked, np.ones(len(picked))
    total = times.sum()
    if strategy in ("often", "rarely") and total > 0:
        weight = times if strategy == "often" else times.max() - times
        if np.count_nonzero(weight) >= count:
            picked = rng.choice(n, size=count, replace=False, p=weight / weight.sum())
            return picked, np.ones(count)
    uncovered = np.flatnonzero(times == 0)
    pool = uncovered if len(uncovered) else np.arange(n)
    picked = rng.choice(pool, size=min(count, len(pool)), replace=False)
    return picked, np.ones(len(picked))


def heavy_neurons(model, layers, granularity: str, share: float = 0.1) -> np.ndarray:
    """Flat indices of the ``share`` of all neurons whose incoming weights have the largest positive mean (the
    kernel slice of their channel in the Conv, MatMul or Gemm that feeds their layer); none where a layer has no
    such weight."""
    from ..graph_view import graph_view

    view = graph_view(model.proto)
    means, start = [], 0
    for layer in layers:
        size = layer.neurons(granularity)
        weight = _incoming_weight_means(view, layer.tensor)
        if weight is not None and len(weight) == size:
            for i in np.flatnonzero(weight > 0):
                means.append((float(weight[i]), start + int(i)))
        start += size
    means.sort(key=lambda item: (-item[0], item[1]))
    return np.asarray([index for _, index in means[:int(share * start)]], np.int64)


_THROUGH = {"Relu", "LeakyRelu", "Elu", "Selu", "Sigmoid", "Tanh", "Clip", "HardSigmoid", "Softplus",
            "BatchNormalization", "Identity", "Dropout", "PRelu", "Gelu"}


def _incoming_weight_means(view, tensor: str) -> np.ndarray | None:
    node = view.producer(tensor)
    for _ in range(8):
        if node is None:
            return None
        inputs = [t.name for t in node.inputs]
        if node.op in ("Conv", "ConvTranspose"):
            w = view.constant(inputs[1])
            return None if w is None else w.reshape(w.shape[0], -1).mean(axis=1)
        if node.op == "MatMul":
            w = view.constant(inputs[1])
            return None if w is None or w.ndim != 2 else w.mean(axis=0)
        if node.op == "Gemm":
            w = view.constant(inputs[1])
            if w is None:
                return None
            return (w if node.attrs.get("transB", 0) else w.T).mean(axis=1)
        if node.op == "Add":
            moving = [name for name in inputs if view.constant(name) is None]
            if len(moving) != 1:
                return None
            node = view.producer(moving[0])
            continue
        if node.op not in _THROUGH:
            return None
        node = view.producer(inputs[0])
    return None


class DLFuzz(Method):
    name = "dlfuzz"
    summary = "DLFuzz baseline: mutations towards other classes and chosen neurons, kept while coverage grows"
    paper = "Guo, Jiang, Zhang, Chen, Sun: DLFuzz: Differential Fuzzing Testing of Deep Learning Systems " \
            "(ESEC/FSE 2018)"
    uses_neurons = False
    metrics = ((("adversarial_seeds",), "seeds with an adversarial input", "max", False),
               (("mutations",), "mutations", None, False),
               (("coverage_after",), "neuron coverage (DLFuzz's)", "max", True))

    @dataclass(frozen=True)
    class Options:
        strategy: str = option("weights", "neuron choice: often, rarely, weights, threshold or random",
                               choices=STRATEGIES)
        neurons_to_cover: int = option(10, "neurons to cover per mutation (neuron_to_cover_num)", minimum=1)
        top: int = option(4, "other classes whose scores are raised (k)", minimum=1)
        threshold: float = option(0.25, "a neuron is covered when its scaled value is above this", minimum=0,
                                  maximum=1)
        iterations: int = iterations_option(3)
        step: float = step_option(0.02)
        max_change: float = option(0.02, "a mutation is queued while ||x − seed||₂ / ||seed||₂ is below this",
                                   above=0)
        predict_weight: float = option(0.5, "weight of the other classes' scores", minimum=0)
        neuron_weight: float = option(0.5, "weight of the chosen neurons' values", minimum=0)

    def run(self, p):
        o = p.options
        layers = p.model.select_layers("auto")
        module, groups, axes = p.once("dlfuzz", lambda: exposed_module(p, layers))
        heavy = p.once("dlfuzz-heavy", lambda: heavy_neurons(p.model, layers, "channel"))
        total = sum(layer.neurons("channel") for layer in layers)
        times = np.zeros(total, np.int64)
        out = np.empty_like(p.x)
        adversarial = mutations = 0
        for i in range(len(p.x)):
            seed = p.x[i:i + 1]
            side = {k: v[i:i + 1] for k, v in p.side.items()}
            rng = np.random.default_rng([p.seed, p.first + i])
            cover(times, module.outputs(seed, side), axes, o.threshold)
            queue, found, last = [seed.copy()], None, seed
            while queue:
                item = queue.pop(0)
                outputs = module.outputs(item, side)
                weights, label = class_weights(outputs[0][0].astype(np.float64), o.top, o.predict_weight)
                chosen, signs = choose(o.strategy, o.neurons_to_cover, times,
                                       scaled_values(outputs[1:], axes), o.threshold, heavy, rng)
                chosen_groups = neuron_groups(groups, chosen)
                # neuron_groups lists the chosen neurons in ascending flat order (layers are consecutive ranges)
                neuron_weights = o.neuron_weight * signs[np.argsort(chosen, kind="stable")]
                x = item
                for _ in range(o.iterations):
                    grad = module.linear_objective(x, weights, chosen_groups, neuron_weights,
                                                   probabilities=p.scores_are_probabilities, side=side)
                    x = np.clip(x + o.step * normalized(grad), *p.clip).astype(np.float32)
                    mutations += 1
                    before = np.count_nonzero(times) / total
                    after_outputs = module.outputs(x, side)
                    cover(times, after_outputs, axes, o.threshold)
                    gain = np.count_nonzero(times) / total - before
                    change = np.linalg.norm(x - seed) / max(np.linalg.norm(seed), 1e-12)
                    if gain > 0.01 / (p.first + i + 1) and change < o.max_change and len(queue) < MAX_QUEUE:
                        queue.append(x.copy())
                    if found is None and int(after_outputs[0][0].argmax()) != label:
                        found = x.copy()
                    last = x
            out[i] = (found if found is not None else last)[0]
            adversarial += found is not None
        p.module = module
        p.stats = {"adversarial_seeds": adversarial, "mutations": mutations, "covered": int(np.count_nonzero(times)),
                   "neurons": total}
        return out

    def merge(self, parts: list):
        merged = {"adversarial_seeds": 0, "mutations": 0, "coverage_after": []}
        for part in parts:
            merged["adversarial_seeds"] += part["adversarial_seeds"]
            merged["mutations"] += part["mutations"]
            merged["coverage_after"].append(part["covered"] / part["neurons"] if part["neurons"] else 0.0)
        return merged

    def summarize(self, stats, problem) -> dict:
        return {"adversarial_seeds": stats["adversarial_seeds"], "mutations": stats["mutations"],
                "coverage_after": float(np.mean(stats["coverage_after"])) if stats["coverage_after"] else 0.0}

    def summary_lines(self, report: dict) -> list[str]:
        return [f"{report['adversarial_seeds']} seeds with an adversarial input after {report['mutations']} "
                f"mutations; DLFuzz's neuron coverage {100 * report['coverage_after']:.1f} % (mean over chunks)"]
