"""DeepSensor (Jin et al., "Excitement Surfeited Turns to Errors", 2022): particle-swarm fuzzing that
activates the excitable neurons.

The neurons handed to the method are the excitable ones (normalised Shapley value > λ, chosen in
``synthesize``). Per seed a swarm of ``population`` particles moves a perturbation δ inside the L∞ box
of radius ``distance`` (and the valid range). Fitness (the paper's Eq. 6) is the fraction of excitable
neurons that are active (value > 0) on x + δ. Each iteration evaluates the swarms of many seeds as one
onnxruntime batch (forward passes only). Standard PSO update::

    v ← ω v + c1 r1 (pbest − δ) + c2 r2 (gbest − δ),   |v| ≤ v_max,   δ ← clip(δ + v)

with ω decaying linearly from ω_initial 0.9 to ω_end 0.4, c1 = c2 = 2, r1, r2 ~ U(0, 1) per coordinate,
and v_max = half the L∞ budget. A seed stops once its best fitness reaches ``stop_fitness`` (default 1:
every excitable neuron active) or after ``iterations``. The synthesized input is x + gbest.

Every evaluated particle is an intermediate example; those the model misclassifies are the test errors
(as the paper counts them); error categories are the distinct (seed, wrong class) pairs.
"""
from __future__ import annotations

import numpy as np

from .. import graph
from ..spectrum import layer_order_columns, probe_axes
from .base import Problem, register

ROWS = 8192  # particles evaluated per onnxruntime call (about)
C1 = C2 = 2.0
INERTIA = (0.9, 0.4)


def inertia(t: int, iterations: int, start: float = INERTIA[0], end: float = INERTIA[1]) -> float:
    """ω at iteration ``t`` of ``iterations``: linear from ``start`` to ``end``."""
    return start if iterations <= 1 else start - (start - end) * t / (iterations - 1)


def swarm_step(pos: np.ndarray, vel: np.ndarray, pbest: np.ndarray, gbest: np.ndarray, w: float, v_max: float,
               low: np.ndarray, high: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One PSO move for (seeds, particles, dims) arrays; ``gbest`` is (seeds, 1, dims); positions stay in
    [low, high] (per seed and dimension)."""
    r1, r2 = rng.random(pos.shape, np.float32), rng.random(pos.shape, np.float32)
    vel = np.clip(w * vel + C1 * r1 * (pbest - pos) + C2 * r2 * (gbest - pos), -v_max, v_max)
    return np.clip(pos + vel, low, high), vel


def _fitness_session(p: Problem):
    """A session returning the class scores and the activity of the excitable neurons' layers, and the
    activity column of each excitable neuron."""
    tensors = list(dict.fromkeys(n.tensor for n in p.neurons))
    probes = [(t, probe_axes(p.layers[t], p.granularity)) for t in tensors]
    proto, order = graph.expose_activity(p.model.scores_only(), probes, 0.0)
    sizes = [p.layers[t].neurons(p.granularity) for t in tensors]
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    columns = layer_order_columns(order, sizes)[[offsets[tensors.index(n.tensor)] + n.index for n in p.neurons]]
    return p.model.session_for(proto, p.device), columns


def summarize(cache: dict, seeds: int) -> dict:
    """DeepSensor's own numbers: test errors among all intermediate examples, error categories."""
    s = cache.get("deepsensor_stats", {})
    return {"test_errors": s.get("errors", 0), "error_categories": s.get("categories", 0),
            "categories_per_seed": s.get("categories", 0) / max(seeds, 1),
            "seeds_with_errors": s.get("seeds_with_errors", 0), "examples_evaluated": s.get("evaluated", 0),
            "mean_best_fitness": s.get("fitness", 0.0) / max(seeds, 1),
            "seeds_reaching_stop_fitness": s.get("reached", 0)}


@register("deepsensor", "DeepSensor: particle swarms activating the excitable (high-Shapley) neurons",
          summarize=summarize,
          step=0.0, distance=0.1, iterations=20, epsilon=0.0)
def run(p: Problem) -> np.ndarray:
    session, columns = p.once("deepsensor", lambda: _fitness_session(p))
    stats = p.cache.setdefault("deepsensor_stats", {"errors": 0, "categories": 0, "seeds_with_errors": 0,
                                                     "evaluated": 0, "fitness": 0.0, "reached": 0})
    population = p.options.get("population", 100)
    out = np.empty_like(p.x)
    group = max(1, ROWS // population)
    for start in range(0, len(p.x), group):
        out[start:start + group] = _fuzz(p, session, columns, p.x[start:start + group], p.y[start:start + group],
                                         population, stats, p.seed + start)
    return out


def _fuzz(p: Problem, session, columns: np.ndarray, x: np.ndarray, y: np.ndarray, population: int,
          stats: dict, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    flat = x.reshape(len(x), 1, -1)
    low, high, width = p.delta_bounds(flat)
    low, high = low.astype(np.float32), high.astype(np.float32)
    v_max = width / 2
    shape = (len(x), population, flat.shape[-1])
    pos = low + (high - low) * rng.random(shape, np.float32)
    vel = rng.uniform(-v_max, v_max, shape).astype(np.float32)
    wrong = np.zeros((len(x), p.model.num_classes), bool)

    def evaluate(which: np.ndarray, delta: np.ndarray) -> np.ndarray:
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
        return active.reshape(len(which) * population, -1)[:, columns].mean(axis=1).reshape(len(which), population)

    everyone = np.arange(len(x))
    fit = evaluate(everyone, pos)
    pbest, pbest_fit = pos.copy(), fit
    best = fit.argmax(axis=1)
    gbest, gbest_fit = pbest[everyone, best].copy(), fit[everyone, best]
    stop = p.options.get("stop_fitness", 1.0)
    for t in range(p.iterations):
        live = np.flatnonzero(gbest_fit < stop)
        if not len(live):
            break
        pos[live], vel[live] = swarm_step(pos[live], vel[live], pbest[live], gbest[live, None],
                                          inertia(t, p.iterations), v_max, low[live], high[live], rng)
        fit = evaluate(live, pos[live])
        better = fit > pbest_fit[live]
        rows, cols = np.nonzero(better)
        pbest[live[rows], cols] = pos[live[rows], cols]
        pbest_fit[live[rows], cols] = fit[rows, cols]
        best = pbest_fit[live].argmax(axis=1)
        improved = pbest_fit[live, best] > gbest_fit[live]
        gbest[live[improved]] = pbest[live[improved], best[improved]]
        gbest_fit[live[improved]] = pbest_fit[live[improved], best[improved]]
    stats["categories"] += int(wrong.sum())
    stats["seeds_with_errors"] += int(wrong.any(axis=1).sum())
    stats["fitness"] += float(gbest_fit.sum())
    stats["reached"] += int((gbest_fit >= stop).sum())
    return np.clip(flat[:, 0] + gbest, *p.clip).reshape(x.shape).astype(np.float32)
