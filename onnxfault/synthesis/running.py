"""Running a method over the seeds: chunk by chunk in this process or on Ray workers."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

from .base import Problem


def run_in_chunks(run, problem: Problem, size: int) -> np.ndarray:
    """``run`` on ``size`` seeds at a time (memory stays bounded); methods treat samples independently."""
    out = None  # filled in place: no list of chunks and concatenated copy side by side
    for start, stop in chunk_ranges(len(problem.x), size):
        part = problem.rows(start, stop)
        result = run(part)
        if out is None:
            out = np.empty((len(problem.x), *result.shape[1:]), result.dtype)
        out[start:stop] = result
        problem.extra.update(part.extra)
    return out


# What methods leave in the problem's cache for their report (``summarize``), per chunk; everything else
# there is built once (sessions, torch modules) and kept by a worker for its next chunks.
REPORT_KEYS = ("deepsensor_stats", "patch_records", "patch_input_size", "patch_classes", "hotflip_flips")


def chunk_ranges(seeds: int, size: int) -> list[tuple[int, int]]:
    """``run_in_chunks``' chunks: ``size`` seeds at a time, in order."""
    return [(start, min(start + size, seeds)) for start in range(0, seeds, size)]


@dataclass
class WorkerModule:
    """What the driver learns of the workers' torch modules: the device they ran on and their CUDA peak
    (stands in for ``problem.extra["differentiable"]``)."""

    device_name: str
    cuda_peak: float | None = None

    def cuda_peak_mb(self) -> float | None:
        return self.cuda_peak


@dataclass(frozen=True)
class ChunkJob:
    """``run`` on chunks of a problem, for :mod:`onnxfault.distributed.workers`: a worker keeps the problem
    and what its chunks built (``Problem.once``), and returns each chunk's inputs, report stats and extras.
    ``threads``: torch's thread count in the driver, which workers take so that reductions add up alike."""

    method: Callable
    threads: int | None = None

    def start(self, problem: Problem) -> Problem:
        if self.threads:
            import torch

            torch.set_num_threads(self.threads)
        return problem

    def run(self, problem: Problem, item: tuple[int, int], on_batch=None):
        start, stop = item
        built = {k: v for k, v in problem.cache.items() if k not in REPORT_KEYS}
        part = problem.rows(start, stop, cache=built)
        result = self.method(part)
        problem.cache.update({k: v for k, v in part.cache.items() if k not in REPORT_KEYS})
        module = part.extra.get("differentiable")
        extra = {k: v for k, v in part.extra.items() if k != "differentiable"}
        if module is not None:
            extra["differentiable"] = WorkerModule(module.device_name, module.cuda_peak_mb())
        return result, {k: v for k, v in part.cache.items() if k in REPORT_KEYS}, extra


def merge_report_stats(parts: list[dict]) -> dict:
    """The chunks' report stats as one run over all seeds leaves them: deepsensor's counts added in chunk
    order, patch's per-seed records concatenated (renumbered by seed), hotflip's flips per seed concatenated."""
    merged: dict = {}
    for part in parts:
        for key, value in part.items():
            if key == "deepsensor_stats":
                into = merged.setdefault(key, {k: 0 for k in value})
                for k, v in value.items():
                    into[k] = v if k == "total" else into[k] + v
            elif key == "patch_records":
                records = merged.setdefault(key, [])
                records.extend({**r, "seed": len(records) + i} for i, r in enumerate(value))
            elif key == "hotflip_flips":  # per seed, in chunk order
                merged.setdefault(key, []).extend(value)
            else:
                merged.setdefault(key, value)
    return merged


def run_on_ray(run, problem: Problem, size: int, ray) -> np.ndarray:
    """``run_in_chunks`` with its chunks spread over Ray workers (``ray``: a
    :class:`~onnxfault.distributed.RayOptions`): the same chunks, so the same inputs to the bit; the report
    stats and extras of the chunks are merged into ``problem`` in chunk order."""
    import sys

    from ..distributed.workers import map_items

    threads = sys.modules["torch"].get_num_threads() if "torch" in sys.modules else None
    chunks = chunk_ranges(len(problem.x), size)
    results, _ = map_items(ChunkJob(run, threads), replace(problem, extra={}, cache={}), chunks, ray,
                           problem.device)
    out = np.empty((len(problem.x), *results[0][0].shape[1:]), results[0][0].dtype)
    for (start, stop), (result, _, extra) in zip(chunks, results):
        out[start:stop] = result
        problem.extra.update(extra)
    problem.cache.update(merge_report_stats([stats for _, stats, _ in results]))
    peaks = [e["differentiable"].cuda_peak for _, _, e in results if e.get("differentiable")]
    if any(peak is not None for peak in peaks):
        problem.extra["differentiable"].cuda_peak = max(peak for peak in peaks if peak is not None)
    return out
