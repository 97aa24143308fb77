"""SIGINT, SIGTERM and SIGHUP as an exception that unwinds through cleanups, held back where a step must
not be cut in half (a rename, a cleanup)."""
from __future__ import annotations

import signal
from contextlib import contextmanager

SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))
_held = 0
_pending: list[int] = []
_landed: list[str] = []  # outputs renamed into place whole in this process: what an interruption leaves behind


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


def note_landed(paths) -> None:
    """Record outputs that are now in place, whole (after their commit point)."""
    _landed.extend(str(p) for p in paths)


def forget_landed(since: int) -> None:
    """Forget what was recorded after the first ``since`` entries (files written into a staging folder are not
    outputs until the folder is swapped in)."""
    del _landed[since:]


def landed() -> list[str]:
    """The outputs this process has put in place so far."""
    return list(_landed)


def interruption_message(stop: Interrupted) -> str:
    """What an interrupted command says: that nothing was half-written, and what, if anything, landed whole
    before the signal took effect (a signal held during a commit arrives after it)."""
    done = landed()
    if not done:
        return f"{stop}; no output was half-written"
    return (f"{stop} after {', '.join(done)} {'was' if len(done) == 1 else 'were'} written whole; "
            "nothing was half-written")


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
