"""Timing helpers shared by the benchmarks (no onnxfault import: a benchmark may run against an older
onnxfault put first on PYTHONPATH)."""
from __future__ import annotations

import time


def interleaved(fns: dict, repeat: int) -> tuple[dict, dict]:
    """Best time of each function over ``repeat`` rounds; every round runs each once, in an order rotated
    from round to round, so that drift in the machine's speed and position effects hit all of them alike.
    Returns (times, last results)."""
    times = {name: float("inf") for name in fns}
    results = {}
    names = list(fns)
    for round_ in range(repeat):
        for name in names[round_ % len(names):] + names[:round_ % len(names)]:
            start = time.perf_counter()
            results[name] = fns[name]()
            times[name] = min(times[name], time.perf_counter() - start)
    return times, results
