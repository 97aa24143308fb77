"""DeepSensor (Jin et al., "Excitement Surfeited Turns to Errors", 2022): particle-swarm fuzzing that
activates the excitable neurons.

The neurons handed to the method are the excitable ones (Definition 3: normalised Shapley value > λ,
chosen in ``synthesize``); ``p.layers`` holds every layer of the Shapley game. Per seed a swarm of
``population`` particles moves a perturbation δ inside the L∞ box of radius ``distance`` (and the valid
range). Fitness is the paper's Eq. 6: the number of excitable neurons active (value > 0) on x + δ
divided by num(N), the number of *all* neurons of those layers (not of the excitable ones), so it stays
below 1 unless every neuron is excitable. Each iteration evaluates the swarms of many seeds as one
onnxruntime batch (forward passes only). The PSO update (Eqs. 8–9)::

    v ← ω v + c1 r1 (pbest − δ) + c2 r2 (gbest − δ),   |v| ≤ v_max,   δ ← clip(δ + v)

with c1 = c2 = 2, r1, r2 ~ U(0, 1) per coordinate, v_max = half the L∞ budget, and the inertia of
Eq. 7, ω_g = (ω_initial − ω_end)(G_k − g)/G_k + ω_end at move g = 0, …, G_k − 1 (G_k = ``iterations``):
ω_initial 0.4 → ω_end 0.9 as the paper sets them (Section 5.5), ``inertia`` = (start, end) to change it.
A seed stops once its best fitness reaches ``stop_fitness`` (the paper's ε, default 1) or after
``iterations``. The synthesized input is x + gbest.

Every evaluated particle is an intermediate example; those the model misclassifies are the test errors;
error categories are the distinct (seed, wrong class) pairs. ``best_errors`` counts one example per seed
and iteration (the swarm's best after the move), the scale of the paper's Table 3 (≤ seeds × iterations).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .contract import Method, NeuronRequest, Selection, distance_option, iterations_option, option

ROWS = 8192  # particles evaluated per onnxruntime call (about)
C1 = C2 = 2.0
INERTIA = (0.4, 0.9)  # ω_initial, ω_end of Eq. 7 (the paper's Section 5.5)


def inertia(g: int, iterations: int, start: float = INERTIA[0], end: float = INERTIA[1]) -> float:
    """ω at move ``g`` (0-based) of ``iterations``: Eq. 7, (start − end)(G_k − g)/G_k + end, G_k = iterations.

    ω is ``start`` at the first move and approaches ``end``, which it would reach at g = G_k."""
    return (start - end) * (iterations - g) / iterations + end


class DeepSensor(Method):
    name = "deepsensor"
    summary = "DeepSensor: particle swarms activating the excitable (high-Shapley) neurons"
    paper = "Jin et al.: Excitement Surfeited Turns to Errors: Deep Learning Testing Framework Based on Excitable " \
            "Neurons (2022)"
    uses_torch = False
    measures = ("shapley",)
    metrics = ((("test_errors",), "test errors", "max", False),
               (("examples_evaluated",), "examples evaluated", None, False),
               (("error_categories",), "error categories", "max", False),
               (("categories_per_seed",), "categories per seed", "max", False),
               (("seeds_with_errors",), "seeds with errors", "max", False))

    @dataclass(frozen=True)
    class Options:
        distance: float | None = distance_option(0.1)
        iterations: int = iterations_option(20)
        population: int = option(100, "particles per seed", minimum=2)
        stop_fitness: float = option(1.0, "stop a seed at this fitness (Eq. 6: active excitable neurons / all "
                                     "neurons of the layers; the paper's ε)", above=0, maximum=1)
        inertia: tuple[float, float] = option(INERTIA, "ω start,end of Eq. 7 (0.4,0.9 as the paper; 0.9,0.4 the "
                                              "usual decreasing schedule)", minimum=0)

    def choose_neurons(self, request: NeuronRequest, options) -> Selection:
        """The excitable neurons (Definition 3) among all those of the layers (or of a given file), and every
        layer of the Shapley game, which the fitness of Eq. 6 divides by."""
        neurons = request.given if request.given is not None else request.rank(request.layers, None)
        return Selection(excitable(neurons, request.shapley.lambda_), request.layers,
                         game_layers=request.layers)

    def run(self, p):
        return run(p)

    def merge(self, parts: list) -> dict:
        """Counts added in chunk order (``total``, the game's neuron count, is the same in every chunk)."""
        merged: dict = {}
        for part in parts:
            for k, v in part.items():
                merged[k] = v if k == "total" else merged.get(k, 0) + v
        return merged

    def summarize(self, stats, problem) -> dict:
        return summarize(stats or {}, len(problem.x))

    def summary_lines(self, r: dict) -> list[str]:
        return [f"deepsensor: {len(r['neurons'])} of {r['neurons_total']} neurons excitable, {r['test_errors']} "
                f"test errors in {r['examples_evaluated']} examples, {r['error_categories']} error categories "
                f"({r['categories_per_seed']:.2f} per seed)"]


def excitable(neurons: list, lambda_: float) -> list:
    """The excitable neurons (the paper's Definition 3): normalised Shapley value ψ / max ψ above λ ≥ 0, so
    a neuron whose value is 0 or negative never is; re-ranked from 1."""
    from dataclasses import replace

    from ..errors import OnnxFaultError

    kept = [n for n in neurons if n.score > lambda_]
    if not kept:
        raise OnnxFaultError(f"no neuron has a normalised Shapley value above `lambda_` {lambda_}; lower it",
                             parameter="lambda_")
    return [replace(n, rank=r + 1) for r, n in enumerate(kept)]


def swarm_step(pos: np.ndarray, vel: np.ndarray, pbest: np.ndarray, gbest: np.ndarray, w: float, v_max: float,
               low: np.ndarray, high: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One PSO move for (seeds, particles, dims) arrays; ``gbest`` is (seeds, 1, dims); positions stay in
    [low, high] (per seed and dimension)."""
    r1, r2 = rng.random(pos.shape, np.float32), rng.random(pos.shape, np.float32)
    vel = np.clip(w * vel + C1 * r1 * (pbest - pos) + C2 * r2 * (gbest - pos), -v_max, v_max)
    return np.clip(pos + vel, low, high), vel


def _fitness_session(p):
    """A session returning the class scores and the activity of the excitable neurons' layers, the
    activity column of each excitable neuron, and num(N): the neurons of all the game's layers."""
    from .. import graph
    from ..spectrum import layer_order_columns, probe_axes

    tensors = list(dict.fromkeys(n.tensor for n in p.neurons))
    probes = [(t, probe_axes(p.layers[t], p.granularity)) for t in tensors]
    proto, order = graph.expose_activity(p.model.scores_only(), probes, 0.0)
    sizes = [p.layers[t].neurons(p.granularity) for t in tensors]
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    columns = layer_order_columns(order, sizes)[[offsets[tensors.index(n.tensor)] + n.index for n in p.neurons]]
    total = sum(layer.neurons(p.granularity) for layer in p.layers.values())
    return p.model.session_for(proto, p.device), columns, total


def fitness(active: np.ndarray, columns: np.ndarray, total: int) -> np.ndarray:
    """Eq. 6 per row of the bool activity matrix: active excitable neurons (``columns``) / num(N)."""
    return np.count_nonzero(active[:, columns], axis=1) / total


def summarize(s: dict, seeds: int) -> dict:
    """DeepSensor's own numbers (from the merged counts ``s``): test errors among all intermediate examples,
    error categories."""
    return {"test_errors": s.get("errors", 0), "error_categories": s.get("categories", 0),
            "categories_per_seed": s.get("categories", 0) / max(seeds, 1),
            "seeds_with_errors": s.get("seeds_with_errors", 0), "examples_evaluated": s.get("evaluated", 0),
            "best_errors": s.get("best_errors", 0), "best_examples": s.get("best_examples", 0),
            "mean_best_fitness": s.get("fitness", 0.0) / max(seeds, 1),
            "seeds_reaching_stop_fitness": s.get("reached", 0), "neurons_total": s.get("total", 0)}


def run(p) -> np.ndarray:
    session, columns, total = p.once("deepsensor", lambda: _fitness_session(p))
    stats = p.stats = {"errors": 0, "categories": 0, "seeds_with_errors": 0, "evaluated": 0, "best_errors": 0,
                       "best_examples": 0, "fitness": 0.0, "reached": 0, "total": total}
    population = p.options.population
    out = np.empty_like(p.x)
    group = max(1, ROWS // population)
    for start in range(0, len(p.x), group):
        out[start:start + group] = _fuzz(p, session, columns, total, p.x[start:start + group],
                                         p.y[start:start + group], population, stats, p.seed + start)
    return out


def _fuzz(p, session, columns: np.ndarray, total: int, x: np.ndarray, y: np.ndarray, population: int,
          stats: dict, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    start_w, end_w = p.options.inertia
    flat = x.reshape(len(x), 1, -1)
    low, high, width = p.delta_bounds(flat)
    low, high = low.astype(np.float32), high.astype(np.float32)
    v_max = width / 2
    shape = (len(x), population, flat.shape[-1])
    pos = low + (high - low) * rng.random(shape, np.float32)
    vel = rng.uniform(-v_max, v_max, shape).astype(np.float32)
    wrong = np.zeros((len(x), p.model.num_classes), bool)

    def evaluate(which: np.ndarray, delta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Fitness and misclassified flags, (len(which), population); counts the errors."""
        inputs = (flat[which] + delta).reshape(-1, *x.shape[1:])
        scores, active = session.run(inputs)
        predictions = scores.argmax(-1).reshape(len(which), population)
        missed = predictions != y[which, None]
        stats["errors"] += int(missed.sum())
        stats["evaluated"] += int(missed.size)
        hit = np.zeros_like(wrong[which])
        np.put_along_axis(hit, np.where(missed, predictions, y[which, None]), True, axis=1)
        hit[np.arange(len(which)), y[which]] = False
        wrong[which] |= hit
        fit = fitness(active.reshape(len(which) * population, -1), columns, total)
        return fit.reshape(len(which), population), missed

    everyone = np.arange(len(x))
    fit, missed = evaluate(everyone, pos)
    pbest, pbest_fit, pbest_missed = pos.copy(), fit, missed
    best = fit.argmax(axis=1)
    gbest, gbest_fit, gbest_missed = pbest[everyone, best].copy(), fit[everyone, best], missed[everyone, best]
    stop = p.options.stop_fitness
    iterations = p.options.iterations
    for g in range(iterations):
        live = np.flatnonzero(gbest_fit < stop)
        if not len(live):
            break
        pos[live], vel[live] = swarm_step(pos[live], vel[live], pbest[live], gbest[live, None],
                                          inertia(g, iterations, start_w, end_w), v_max, low[live], high[live],
                                          rng)
        fit, missed = evaluate(live, pos[live])
        rows, cols = np.nonzero(fit > pbest_fit[live])
        pbest[live[rows], cols] = pos[live[rows], cols]
        pbest_fit[live[rows], cols] = fit[rows, cols]
        pbest_missed[live[rows], cols] = missed[rows, cols]
        best = pbest_fit[live].argmax(axis=1)
        improved = pbest_fit[live, best] > gbest_fit[live]
        up, best = live[improved], best[improved]
        gbest[up], gbest_fit[up], gbest_missed[up] = pbest[up, best], pbest_fit[up, best], pbest_missed[up, best]
        stats["best_errors"] += int(gbest_missed[live].sum())
        stats["best_examples"] += len(live)
    stats["categories"] += int(wrong.sum())
    stats["seeds_with_errors"] += int(wrong.any(axis=1).sum())
    stats["fitness"] += float(gbest_fit.sum())
    stats["reached"] += int((gbest_fit >= stop).sum())
    return np.clip(flat[:, 0] + gbest, *p.clip).reshape(x.shape).astype(np.float32)
