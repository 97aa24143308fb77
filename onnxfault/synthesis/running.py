"""Running a method over the seeds: chunk by chunk in this process, and the process's peak memory."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from .base import Problem


def peak_rss_reset() -> float:
    """Reset the process's peak resident set size and return the peak before the reset (MB), so that the
    whole-process peak is max(that, a later ``peak_rss_mb()``). Where the reset fails (not Linux), the peak
    is left alone and a phase's peak reads as the whole process's so far."""
    before = peak_rss_mb()
    try:  # Linux: writing 5 resets the peak resident set size (VmHWM)
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass
    return before


def peak_rss_mb() -> float:
    """The peak resident set size since the process started or since the last reset (MB)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_in_chunks(run, problem: Problem, size: int) -> np.ndarray:
    """``run`` on ``size`` seeds at a time (memory stays bounded); methods treat samples independently."""
    out = None  # filled in place: no list of chunks and concatenated copy side by side
    for start in range(0, len(problem.x), size):
        part = replace(problem, x=problem.x[start:start + size], y=problem.y[start:start + size], extra={})
        result = run(part)
        if out is None:
            out = np.empty((len(problem.x), *result.shape[1:]), result.dtype)
        out[start:start + len(result)] = result
        problem.extra.update(part.extra)
    return out
