"""AIGENT (``--method patch``): patch the weights, then translate the patch into an input change.

Per seed: read the fully connected (Leaky)ReLU chain (``chain.dense_chain``), fix the seed's linear
region, and for each candidate class (``--target`` T, else every other class by decreasing logit) run
the linear programs of ``aigent.attack``. Each input found is re-checked on the ORIGINAL ONNX model
with onnxruntime; only inputs that are really misclassified (or classified as T) count, and the first
such class ends the seed's search. Seeds without one are returned unchanged. Options:
``objective`` ("pixels": fewest changed input elements, MILP; "l1": LP), ``max_pixels``,
``time_limit`` (seconds per MILP), and the algorithm's ``relaxation``, ``phases``, ``weight_change``,
``alpha`` and ``hold_inactive`` (see ``aigent.Settings``).
"""
from __future__ import annotations

import time

import numpy as np

from .. import graph
from .aigent import Settings, attack, region
from .base import Problem
from .chain import dense_chain
from .metrics import stats


def pielou(classes: list[int], num_classes: int) -> float:
    """Evenness of the adversarial classes: Shannon entropy / ln(num_classes) (0 when fewer than 2 seen)."""
    counts = np.bincount(np.asarray(classes, np.int64), minlength=num_classes) if classes else np.zeros(num_classes)
    share = counts[counts > 0] / max(counts.sum(), 1)
    return float(-(share * np.log(share)).sum() / np.log(num_classes)) if len(share) > 1 else 0.0


def summarize(cache: dict, seeds: int) -> dict:
    """AIGENT's numbers: defect detection rate, pixels changed, distances of the attacked seeds, Pielou."""
    records = cache.get("patch_records", [])
    hit = [r for r in records if r["attacked"]]
    size = cache.get("patch_input_size", 1)
    pixels = np.array([r["pixels"] for r in hit], np.float64)
    l2 = np.array([r["l2"] for r in hit], np.float64)
    linf = np.array([r["linf"] for r in hit], np.float64)

    def stats_or_none(v: np.ndarray) -> dict | None:
        return stats(v) if len(v) else None

    stages: dict[str, int] = {}
    for r in records:
        for stage in r["failures"]:
            stages[stage] = stages.get(stage, 0) + 1
    return {
        "defect_detection_rate": len(hit) / max(len(records), 1),
        "pixels_modified": None if not len(hit) else {**stats(pixels), "percent": float(100 * pixels.mean() / size)},
        "adversarial_l2": stats_or_none(l2), "adversarial_linf": stats_or_none(linf),
        "pielou": pielou([r["class"] for r in hit], cache.get("patch_classes", 2)),
        "seconds_per_input": float(sum(r["seconds"] for r in records) / max(len(records), 1)),
        "failures": stages,
        "per_seed": [{k: r[k] for k in ("seed", "attacked", "class", "pixels", "failures")} for r in records],
    }


SETTINGS = ("relaxation", "phases", "weight_change", "alpha", "hold_inactive")  # options that are Settings


def settings_from(options: dict, target: int | None) -> Settings:
    """The algorithm's settings from the method options; a target needs "c beats every class"."""
    return Settings(**{k: options[k] for k in SETTINGS if k in options}, goal="flip" if target is None else "wins")


def _prefix(p: Problem, chain):
    """A function x (1, …) → (prefix value, its Jacobian): the identity when the chain starts at the input."""
    if chain.prefix == p.model.input_name:
        return lambda x: (x.reshape(-1).astype(np.float64), np.eye(x.size))
    module = p.differentiable(graph.cut_at(p.model.scores_only(), [chain.prefix]))
    p.extra["differentiable"] = module
    return module.value_and_jacobian


def run(p: Problem) -> np.ndarray:
    chain = p.once("patch_chain", lambda: dense_chain(p.model.proto, p.model.output_name))
    prefix = p.once("patch_prefix", lambda: _prefix(p, chain))
    session = p.once("patch_session", lambda: p.model.session(p.device))
    records = p.cache.setdefault("patch_records", [])
    p.cache["patch_input_size"] = int(np.prod(p.x.shape[1:]))
    p.cache["patch_classes"] = p.model.num_classes
    objective = p.options.get("objective", "pixels")
    max_pixels, time_limit = p.options.get("max_pixels"), p.options.get("time_limit", 10.0)
    settings = settings_from(p.options, p.target)
    out = p.x.copy()
    for i, (x, label) in enumerate(zip(p.x, p.y)):
        start = time.perf_counter()
        flat = x.reshape(-1).astype(np.float64)
        low, high, _ = p.delta_bounds(flat)
        value, jacobian = prefix(x[None])
        seed = region(chain, value)
        candidates = [p.target] if p.target is not None else \
            [int(c) for c in np.argsort(-seed.zs[-1], kind="stable") if c != label]
        record = {"seed": len(records), "attacked": False, "class": None, "pixels": 0, "failures": []}
        for cls in candidates:
            attempt = attack(chain, seed, jacobian, cls, int(label), low, high, objective, max_pixels, time_limit,
                             settings)
            if attempt.delta is None:
                record["failures"].append(attempt.stage)
                continue
            candidate = np.clip(flat + np.clip(attempt.delta, low, high), *p.clip).astype(np.float32).reshape(x.shape)
            predicted = int(session.run(candidate[None])[0].argmax(-1)[0])
            if predicted == label or (p.target is not None and predicted != p.target):
                record["failures"].append("input not adversarial on the ONNX model (re-check)")
                continue
            change = candidate.astype(np.float64) - x
            record.update(attacked=True, **{"class": predicted}, pixels=int(np.count_nonzero(change)),
                          l2=float(np.sqrt((change ** 2).sum())), linf=float(np.abs(change).max()))
            out[i] = candidate
            break
        record["seconds"] = time.perf_counter() - start
        records.append(record)
    return out
