"""SIGINT, SIGTERM and SIGHUP as an exception that unwinds through cleanups, held back where a step must
not be cut in half (a rename, a cleanup)."""
from __future__ import annotations

import signal
from contextlib import contextmanager

SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))
_held = 0
_pending: list[int] = []


class Interrupted(BaseException):
    """SIGINT/SIGTERM/SIGHUP arrived; a BaseException, so only ``finally`` blocks and cleanups see it."""

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(f"interrupted by {signal.Signals(signum).name}")


def _on_signal(signum: int, frame) -> None:
    if _held:
        _pending.append(signum)
        return
    _pending.clear()
    raise Interrupted(signum)


def install_interrupt_handlers() -> None:
    """Turn SIGINT/SIGTERM/SIGHUP into :class:`Interrupted` (main thread only; the CLI calls this first)."""
    for signum in SIGNALS:
        signal.signal(signum, _on_signal)


@contextmanager
def signals_held():
    """Hold interruptions back for the duration (a rename or cleanup runs to its end), then raise the first."""
    global _held
    _held += 1
    try:
        yield
    finally:
        _held -= 1
        if not _held and _pending:
            signum = _pending[0]
            _pending.clear()
            raise Interrupted(signum)
