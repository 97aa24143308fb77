"""The process's peak resident memory (VmHWM on Linux), and resetting it to measure one phase."""
from __future__ import annotations


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
