"""Silencing native libraries that print straight to the process's stdout/stderr file descriptors."""
from __future__ import annotations

import os
import sys
from contextlib import contextmanager


@contextmanager
def silenced_fds(*fds: int):
    """Point the file descriptors ``fds`` (default 1 and 2) at /dev/null for the block; Python
    exceptions still propagate."""
    fds = fds or (1, 2)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(fd) for fd in fds]
    try:
        with open(os.devnull, "w") as devnull:
            for fd in fds:
                os.dup2(devnull.fileno(), fd)
            yield
    finally:
        for fd, copy in zip(fds, saved):
            os.dup2(copy, fd)
            os.close(copy)
