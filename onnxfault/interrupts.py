"""SIGINT, SIGTERM and SIGHUP as an exception that unwinds through cleanups, held back where a step must
not be cut in half (a rename, a cleanup).

Python runs a signal handler only between bytecodes, so a native call (an onnxruntime run through a Loop, a
MILP solve, a long torch op) would keep a signal waiting until it returns. A watcher thread, woken through
:func:`signal.set_wakeup_fd`, therefore asks the native calls that can stop (see :func:`stoppable`) to stop,
and if the main thread has still not begun to unwind :data:`GRACE_S` seconds later, removes the temps in
flight (see :func:`at_forced_exit`), prints the same one line and ends the process itself.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
import time
from contextlib import contextmanager
from typing import Callable

SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))
GRACE_S = 1.0  # how long the main thread may stay in a native call after a signal before the process ends anyway
UNWIND_S = 10.0  # how long cleanups (closing a Ray cluster) may run once the main thread unwinds
_held = 0
_pending: list[int] = []
_landed: list[str] = []  # outputs renamed into place whole in this process: what an interruption leaves behind
_staging: list[int] = []  # where in _landed each open staging folder began
_signalled: list[int] = []  # the signals the watcher has seen, first first
_unwinding = False  # Interrupted was raised in the main thread: cleanups run, further signals wait for them
_stoppers: dict[int, Callable[[], None]] = {}
_stoppers_lock = threading.Lock()
_forced_cleanups: list[Callable[[], None]] = []
_report: list[Callable[[str], None]] = []
_installed = False  # install_interrupt_handlers ran: reclaim_signals puts the handlers back


class Interrupted(BaseException):
    """SIGINT/SIGTERM/SIGHUP arrived; a BaseException, so only ``finally`` blocks and cleanups see it."""

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(f"interrupted by {signal.Signals(signum).name}")


def _on_signal(signum: int, frame) -> None:
    if _unwinding:
        return  # a second signal while cleanups run: they finish, and the watcher bounds how long they take
    if _held:
        _pending.append(signum)
        return
    _pending.clear()
    _raise(signum)


def _raise(signum: int):
    global _unwinding
    _unwinding = True
    raise Interrupted(signum)


def interruption_in(error: BaseException) -> Interrupted | None:
    """The interruption behind ``error``, if one is: a library that calls back into Python can turn the
    :class:`Interrupted` raised there into its own error (Ray's ``CoreWorker.wait``: a SystemError)."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, Interrupted):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def install_interrupt_handlers(report: Callable[[str], None] | None = None) -> None:
    """Turn SIGINT/SIGTERM/SIGHUP into :class:`Interrupted` (main thread only). With ``report`` (the CLI,
    which owns the process) a watcher thread also stops native calls and, past :data:`GRACE_S`, ends the
    process itself; ``report`` prints that exit's one line."""
    global _unwinding, _installed
    _unwinding, _installed = False, True
    _pending.clear()
    _signalled.clear()
    if report is not None:
        _report[:] = [report]
        read_end, write_end = os.pipe()
        os.set_blocking(write_end, False)
        signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
        threading.Thread(target=_watch, args=(read_end,), name="onnxfault-signals", daemon=True).start()
    for signum in SIGNALS:
        signal.signal(signum, _on_signal)


def reclaim_signals() -> None:
    """Put the handlers back if a library replaced them (Ray's core worker installs its own for SIGTERM)."""
    if _installed:
        for signum in SIGNALS:
            signal.signal(signum, _on_signal)


@contextmanager
def shielding_children():
    """Processes started meanwhile (a local Ray runtime's) begin with SIGINT and SIGHUP blocked: a terminal's
    Ctrl-C, sent to the whole foreground process group, then reaches only this process, which stops them in
    order. A signal sent to this process meanwhile still reaches it, through a thread that does not block it
    (the watcher) or when the block ends."""
    group = [signum for signum in SIGNALS if signum != signal.SIGTERM]
    if not hasattr(signal, "pthread_sigmask") or not group:
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, group)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def ignore_late_signals() -> None:
    """After the command's work is done (its outputs landed, its summary printed), a signal has nothing left to
    stop: ignore it rather than raise into the interpreter's exit callbacks."""
    for signum in SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


@contextmanager
def stoppable(stop: Callable[[], None]):
    """While the body runs a native call, a signal also calls ``stop`` (from the watcher thread) so that the
    call ends early, e.g. by setting an onnxruntime ``RunOptions.terminate``."""
    key = id(stop)
    with _stoppers_lock:
        _stoppers[key] = stop
    try:
        yield
    finally:
        with _stoppers_lock:
            _stoppers.pop(key, None)


def raise_if_stopped() -> None:
    """Raise :class:`Interrupted` if a signal asked this process to stop: a native call that a stopper ended
    raises its own error, which is not the cause to report."""
    if _signalled and not _held:
        _raise(_signalled[0])


def at_forced_exit(cleanup: Callable[[], None]) -> None:
    """Run ``cleanup`` (from the watcher thread) before the process ends itself after a signal."""
    _forced_cleanups.append(cleanup)


def _watch(read_end: int) -> None:
    """The watcher thread: on each signal, stop the native calls, then bound how long the main thread takes."""
    while True:
        try:
            data = os.read(read_end, 64)
        except OSError:
            return
        if not data:
            return
        for signum in (byte for byte in data if byte in SIGNALS):
            if not _signalled:
                _signalled.append(signum)
            with _stoppers_lock:
                stoppers = list(_stoppers.values())
            for stop in stoppers:
                stop()
        if _signalled:
            _deadline(_signalled[0])


def _deadline(signum: int) -> None:
    start = time.monotonic()
    while True:
        time.sleep(0.05)
        if _held:  # a commit step (a rename) runs to its end; the grace period starts after it
            start = time.monotonic()
            continue
        if time.monotonic() - start > (UNWIND_S if _unwinding else GRACE_S):
            _force_exit(signum)


def _force_exit(signum: int) -> None:
    """End the process from the watcher thread: temps removed, the one line printed, exit 128 + signum."""
    for cleanup in _forced_cleanups:
        try:
            cleanup()
        except Exception:  # noqa: BLE001 - the exit goes ahead whatever one cleanup does
            pass
    try:
        message = interruption_message(Interrupted(signum))
        _report[0](message)
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(128 + signum)


def note_landed(paths) -> None:
    """Record outputs that are now in place, whole (after their commit point)."""
    _landed.extend(str(p) for p in paths)


@contextmanager
def staging():
    """Files written meanwhile go into a staging folder: they are not outputs until the folder is swapped in,
    so they are forgotten afterwards and never reported as landed."""
    _staging.append(len(_landed))
    try:
        yield
    finally:
        del _landed[_staging.pop():]


def landed() -> list[str]:
    """The outputs this process has put in place so far (never files in a staging folder)."""
    return list(_landed[:_staging[0]] if _staging else _landed)


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
            _raise(signum)
