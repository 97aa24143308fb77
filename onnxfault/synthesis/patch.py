"""AIGENT (``--method patch``): patch the weights, then translate the patch into an input change.

Per seed: read the fully connected (Leaky)ReLU chain (``chain.dense_chain``), fix the seed's linear
region, and for each candidate class (``--target`` T, else every other class by decreasing logit) run
the linear programs of ``aigent.attack``. Each input found is re-checked on the ORIGINAL ONNX model
with onnxruntime; only inputs that are really misclassified (or classified as T) count, and the first
such class ends the seed's search. Seeds without one are returned unchanged. Options:
``objective`` ("pixels": fewest changed input elements, MILP; "l1": LP), ``max_pixels``,
``time_limit`` (seconds per MILP), and the algorithm's ``relaxation``, ``phases``, ``weight_change``,
``weight_bound`` (the paper's α; ``alpha`` is its deprecated name, as the attack libraries' α is a step size)
and ``hold_inactive`` (see ``aigent.Settings``).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .contract import Method, distance_option, option


class Patch(Method):
    name = "patch"
    summary = "AIGENT: patch edge-layers by linear programs, then solve for the input change"
    paper = "AIGENT: weight patches by linear programs, translated into input changes"
    uses_neurons = False  # torch: for a CNN's conv prefix (imported before the clock all the same)
    metrics = ((("defect_detection_rate",), "defect detection rate", "max", True),
               (("pixels_modified", "mean"), "pixels modified (mean)", "min", False),
               (("pixels_modified", "percent"), "pixels modified (%)", "min", False),
               (("pielou",), "Pielou evenness", "max", False),
               (("seconds_per_input",), "seconds per input", "min", False))

    @dataclass(frozen=True)
    class Options:
        distance: float | None = distance_option(0.1)
        objective: str = option("pixels", "pixels (fewest changed elements, MILP) | l1 (LP)", choices=("pixels", "l1"))
        max_pixels: int | None = option(None, "at most this many changed input elements", minimum=1)
        time_limit: float = option(10.0, "seconds per MILP", above=0)
        relaxation: str = option("region", "region (the property pulled back through the patched layer's on/off "
                                 "pattern) | paper (the marking's inequalities, unmarked neurons equal)",
                                 choices=("region", "paper"))
        phases: str = option("free", "free (a patch may switch the patched layer's neurons on or off) | seed (the "
                             "seed's phases, as the paper)", choices=("free", "seed"))
        weight_change: str = option("total", "what a patch minimises: total (Σ|ΔW|, the paper) | max (the largest "
                                    "|ΔW|)", choices=("total", "max"))
        weight_bound: float | None = option(None, "bound α on every weight change |ΔW| (the paper's α; none: no bound)",
                                            above=0, deprecated={"alpha": "the attack libraries' alpha is a step "
                                                                          "size"})
        hold_inactive: bool = option(False, "keep inactive neurons of the unpatched layers between a patch and its "
                                     "property inactive too")

    def run(self, p):
        return run(p)

    def merge(self, parts: list) -> list:
        """The chunks' per-seed records concatenated, renumbered by seed."""
        records: list = []
        for part in parts:
            records.extend({**r, "seed": len(records) + i} for i, r in enumerate(part or []))
        return records

    def summarize(self, stats, problem) -> dict:
        return summarize(stats or [], int(np.prod(problem.x.shape[1:])), problem.model.num_classes)

    def summary_lines(self, r: dict) -> list[str]:
        pixels = r["pixels_modified"]
        return [f"patch: defect detection {100 * r['defect_detection_rate']:.1f} %"
                + ("" if pixels is None else f", pixels modified mean {pixels['mean']:.1f} ({pixels['percent']:.2f} %)")
                + f", Pielou {r['pielou']:.3f}" + "".join(f"; {n}× {stage}" for stage, n in r["failures"].items())]


def pielou(classes: list[int], num_classes: int) -> float:
    """Evenness of the adversarial classes: Shannon entropy / ln(num_classes) (0 when fewer than 2 seen)."""
    counts = np.bincount(np.asarray(classes, np.int64), minlength=num_classes) if classes else np.zeros(num_classes)
    share = counts[counts > 0] / max(counts.sum(), 1)
    return float(-(share * np.log(share)).sum() / np.log(num_classes)) if len(share) > 1 else 0.0


def summarize(records: list, size: int, classes: int) -> dict:
    """AIGENT's numbers from the per-seed ``records`` (inputs of ``size`` elements, ``classes`` classes): defect
    detection rate, pixels changed, distances of the attacked seeds, Pielou."""
    from .metrics import stats

    hit = [r for r in records if r["attacked"]]
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
        "pielou": pielou([r["class"] for r in hit], classes),
        "seconds_per_input": float(sum(r["seconds"] for r in records) / max(len(records), 1)),
        "failures": stages,
        "per_seed": [{k: r[k] for k in ("seed", "attacked", "class", "pixels", "failures")} for r in records],
    }


SETTINGS = {"relaxation": "relaxation", "phases": "phases", "weight_change": "weight_change",
            "weight_bound": "alpha", "hold_inactive": "hold_inactive"}  # option → aigent.Settings field


def settings_from(options, target: int | None):
    """The algorithm's settings from the method options; a target needs "c beats every class"."""
    from .aigent import Settings

    return Settings(**{field: getattr(options, name) for name, field in SETTINGS.items()},
                    goal="flip" if target is None else "wins")


def _prefix(p, chain):
    """A function x (1, …) → (prefix value, its Jacobian): the identity when the chain starts at the input."""
    from .. import graph

    if chain.prefix == p.model.input_name:
        return lambda x: (x.reshape(-1).astype(np.float64), np.eye(x.size))
    module = p.differentiable(graph.cut_at(p.model.scores_only(), [chain.prefix]))
    p.module = module
    return module.value_and_jacobian


def run(p) -> np.ndarray:
    from .aigent import attack, region
    from .chain import dense_chain

    chain = p.once("patch_chain", lambda: dense_chain(p.model.proto, p.model.output_name))
    prefix = p.once("patch_prefix", lambda: _prefix(p, chain))
    session = p.once("patch_session", lambda: p.model.session(p.device))
    records = p.stats = []
    objective, max_pixels, time_limit = p.options.objective, p.options.max_pixels, p.options.time_limit
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
