"""Running a method over the seeds: chunk by chunk in this process or on Ray workers."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

from .base import Problem


def run_in_chunks(run, problem: Problem, size: int) -> tuple[np.ndarray, list]:
    """``run`` on ``size`` seeds at a time (memory stays bounded); methods treat samples independently.
    Returns the inputs and each chunk's statistics (its ``stats``), in seed order."""
    out = None  # filled in place: no list of chunks and concatenated copy side by side
    stats = []
    for start, stop in chunk_ranges(len(problem.x), size):
        part = problem.rows(start, stop)
        result = run(part)
        if out is None:
            out = np.empty((len(problem.x), *result.shape[1:]), result.dtype)
        out[start:stop] = result
        problem.module = part.module or problem.module
        stats.append(part.stats)
    return out, stats


def chunk_ranges(seeds: int, size: int) -> list[tuple[int, int]]:
    """``run_in_chunks``' chunks: ``size`` seeds at a time, in order."""
    return [(start, min(start + size, seeds)) for start in range(0, seeds, size)]


@dataclass
class WorkerModule:
    """What the driver learns of the workers' torch modules: the device they ran on and their CUDA peak
    (stands in for ``problem.module``)."""

    device_name: str
    cuda_peak: float | None = None

    def cuda_peak_mb(self) -> float | None:
        return self.cuda_peak


@dataclass(frozen=True)
class ChunkJob:
    """``run`` on chunks of a problem, for :mod:`onnxfault.distributed.workers`: a worker keeps the problem
    and what its chunks built (``Problem.once``), and returns each chunk's inputs, statistics and extras.
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
        part = problem.rows(start, stop)  # shares the worker's cache: what earlier chunks built
        result = self.method(part)
        module = part.module
        return result, part.stats, None if module is None else WorkerModule(module.device_name, module.cuda_peak_mb())


def run_on_ray(run, problem: Problem, size: int, ray) -> tuple[np.ndarray, list]:
    """``run_in_chunks`` with its chunks spread over Ray workers (``ray``: a
    :class:`~onnxfault.distributed.RayOptions`): the same chunks, so the same inputs to the bit, and each
    chunk's statistics in seed order; ``problem.module`` tells the workers' device and their largest CUDA peak."""
    import sys

    from ..distributed.workers import map_items

    threads = sys.modules["torch"].get_num_threads() if "torch" in sys.modules else None
    chunks = chunk_ranges(len(problem.x), size)
    results, _ = map_items(ChunkJob(run, threads), replace(problem, module=None, cache={}), chunks, ray,
                           problem.device)
    out = np.empty((len(problem.x), *results[0][0].shape[1:]), results[0][0].dtype)
    for (start, stop), (result, _, module) in zip(chunks, results):
        out[start:stop] = result
        problem.module = module or problem.module
    peaks = [m.cuda_peak for _, _, m in results if m is not None and m.cuda_peak is not None]
    if peaks:
        problem.module.cuda_peak = max(peaks)
    return out, [stats for _, stats, _ in results]
