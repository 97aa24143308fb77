"""Output files written all at once or not at all.

Every output goes to a temp file (or folder) beside its target and is renamed into place once everything is
written; :func:`write_together` lands several files together, :func:`write_folder` swaps a whole folder in.
An interruption (see :mod:`onnxfault.interrupts`) removes the temps on the way out, and is held back while
renames or cleanups run so none is cut in half.
"""
from __future__ import annotations

import errno
import json
import math
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Callable, Iterable

from .errors import OnnxFaultError
from .interrupts import at_forced_exit, note_landed, signals_held, staging

Writer = Callable[[Path], None]
_in_flight: set[Path] = set()  # every temp made and not yet removed: what a forced exit removes


def check_writable(path: str | os.PathLike, what: str = "output") -> Path:
    """Fail early (before any work) when ``path`` cannot be written: a folder, a device, a pipe or a socket (an
    output is a regular file; ``-`` is how a command writes to stdout), a missing folder, no permission.
    Returns the path written: a symbolic link's target, so that the link stays."""
    path = Path(path)
    if path.is_symlink():
        path = Path(os.path.realpath(path))
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise OnnxFaultError(f"{what} path {path} is a directory; give a file name")
    if path.exists() and not path.is_file():
        raise OnnxFaultError(f"{what} {path} is not a regular file (a device, pipe or socket); give a file name, or "
                             "- for stdout where the command takes it")
    if not parent.is_dir():
        raise OnnxFaultError(f"cannot write {what} {path}: folder {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise OnnxFaultError(f"cannot write {what} {path}: permission denied; choose a writable path")
    return path


def check_not_read(path: str | os.PathLike, what: str, inputs) -> None:
    """Fail when the output ``path`` is one of the files the run reads, by name, through a link or as a hard link
    of one (``inputs``: paths; anything else is skipped); an input folder counts as every file under it. An output
    never replaces its own input."""
    out = Path(path)
    if not out.exists():
        return
    for item in inputs:
        if not isinstance(item, (str, os.PathLike)) or not Path(item).exists():
            continue
        inside = Path(item).is_dir() and Path(os.path.realpath(out)).is_relative_to(os.path.realpath(item))
        if inside or os.path.samefile(out, item):
            raise OnnxFaultError(f"{what} {path} is {'inside ' if inside else ''}{item}, which this run reads; write "
                                 "the output elsewhere")


def check_folder_holds_no_input(folder: str | os.PathLike, what: str, inputs) -> None:
    """Fail when an output ``folder`` (replaced as a whole) is, or holds, a file the run reads."""
    real = Path(os.path.realpath(folder))
    for item in inputs:
        if isinstance(item, (str, os.PathLike)) and os.path.lexists(item):
            source = Path(os.path.realpath(item))
            if source == real or source.is_relative_to(real):
                raise OnnxFaultError(f"{what} {folder} holds {item}, which this run reads, and a run replaces the "
                                     "folder as a whole; give another folder")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _cannot_write(path: Path, err: OSError) -> OnnxFaultError:
    return OnnxFaultError(f"cannot write {path}: {err.strerror or err}; choose a writable path")


def _temp_beside(path: Path, kind: str, made: list[Path]) -> Path:
    """A new temp file (``kind`` "file") or folder ("dir", "new", "old") beside ``path``, appended to ``made``
    with interruptions held, so whoever cleans ``made`` finds it."""
    parent = path.parent if str(path.parent) else Path(".")
    prefix = f".{path.name[:80]}."
    with signals_held():
        if kind == "file":
            suffix = path.suffix if len(path.suffix) <= 16 else ".tmp"
            fd, name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=parent)
            os.close(fd)
        else:
            name = tempfile.mkdtemp(prefix=prefix, suffix=f".{kind}", dir=parent)
        made.append(Path(name))
        _in_flight.add(made[-1])
    return made[-1]


def _remove(paths: Iterable[Path]) -> None:
    with signals_held():
        for path in list(paths):
            _delete(path)


def _delete(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
    _in_flight.discard(path)


def _remove_in_flight() -> None:
    """Remove the temps still in flight (a forced exit, from the watcher thread; it never runs while a
    rename is held). A temp renamed into place is no longer at its temp path, so only leftovers go."""
    for path in list(_in_flight):
        _delete(path)


at_forced_exit(_remove_in_flight)


def write_together(outputs: list[tuple[str | os.PathLike, Writer]]) -> list[Path]:
    """Write several files all or nothing: each ``write(tmp)`` fills a temp file beside its target, and only
    when all are written are they renamed in; on any failure or interruption no target changes and no temp
    is left."""
    targets = [check_writable(path) for path, _ in outputs]
    seen = set()
    for target in targets:
        if target.resolve() in seen:
            raise OnnxFaultError(f"two outputs are both {target}; give each its own file name")
        seen.add(target.resolve())
    temps: list[Path] = []
    target = targets[0] if targets else Path(".")
    try:
        for target, (_, write) in zip(targets, outputs):
            write(_temp_beside(target, "file", temps))
            # mkstemp makes 0600: a new output gets the usual mode, a replaced file keeps its own
            os.chmod(temps[-1], stat.S_IMODE(target.stat().st_mode) if target.is_file() else 0o666 & ~_umask())
        _rename_all(temps, targets)
        temps.clear()
    except OSError as err:
        raise _cannot_write(target, err) from err
    finally:
        _remove(temps)
    return targets


def _rename_all(temps: list[Path], targets: list[Path]) -> None:
    """Rename each temp onto its target, interruptions held; if one rename fails, put the old files back."""
    placed: list[tuple[Path, Path | None]] = []  # (target, its old file moved aside, or None)
    backups: list[Path] = []
    with signals_held():
        try:
            for tmp, target in zip(temps, targets):
                backup = None
                if os.path.lexists(target):
                    backup = _temp_beside(target, "file", backups)
                    os.replace(target, backup)
                try:
                    os.replace(tmp, target)
                    _in_flight.discard(tmp)
                except OSError:
                    if backup is not None:
                        os.replace(backup, target)
                    raise
                placed.append((target, backup))
            note_landed(targets)  # before a held signal is raised: what it interrupts has landed
        except OSError:
            for target, backup in reversed(placed):
                if backup is None:
                    target.unlink(missing_ok=True)
                else:
                    os.replace(backup, target)
            raise
        finally:
            _remove(backups)


def write_atomic(path: str | os.PathLike, write: Writer) -> Path:
    """Call ``write(tmp_path)`` then rename ``tmp_path`` to ``path``; remove the temp file on failure."""
    return write_together([(path, write)])[0]


def write_folder(out: str | os.PathLike, write: Writer, what: str = "--out") -> bool:
    """Fill a staging folder beside ``out`` with ``write(staging)``, then swap it in whole: ``out`` holds the
    complete new contents or stays as it was, and no staging or backup folder is left. Returns whether an
    earlier (non-empty) ``out`` was replaced. Concurrent writers: the last to swap wins, whole."""
    out = Path(out)
    made: list[Path] = []
    try:
        folder = _temp_beside(out, "new", made)
        with staging():  # the staging folder's files land with the folder, not one by one
            write(folder)
        os.chmod(folder, 0o777 & ~_umask())  # mkdtemp makes 0700
        with signals_held():  # the swap and the record of it: a signal after the swap says the run landed
            replaced = _swap_in(folder, out, made)
            note_landed([out])
        return replaced
    except OSError as err:
        raise OnnxFaultError(f"cannot write to {what} {out}: {err.strerror or err}; choose another folder") from err
    finally:
        _remove(made)


def _swap_in(staging: Path, out: Path, made: list[Path]) -> bool:
    """Rename ``staging`` to ``out``, first moving aside (into ``made``, removed later) whatever folder is
    there, including one a concurrent run renames in meanwhile; on a failure the folder moved aside last
    goes back."""
    moved = None  # the folder last moved aside from ``out``
    with signals_held():
        if out.is_dir() and not out.is_symlink() and _exchange(staging, out):
            return True  # one atomic step: readers see the old folder or the new one, never neither
        for _ in range(20):
            try:
                os.rename(staging, out)  # also replaces an empty folder
                return moved is not None
            except OSError as err:
                if err.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    _put_back(moved, out, made)
                    raise
            backup = _temp_beside(out, "old", made)
            try:
                os.rename(out, backup)
                moved = backup
            except FileNotFoundError:  # a concurrent run moved it aside first
                pass
        _put_back(moved, out, made)
        raise OnnxFaultError(f"{out} kept changing while this run swapped its files in; run again")


def _exchange(a: Path, b: Path) -> bool:
    """Swap the folders ``a`` and ``b`` in one atomic step (Linux ``renameat2`` with ``RENAME_EXCHANGE``); False
    where the system cannot (then the caller renames in two steps)."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    failure = ctypes.get_errno()
    if failure in (errno.EINVAL, errno.ENOSYS, errno.EXDEV, errno.EPERM, errno.ENOTSUP):
        return False  # no exchange here (an old kernel, a file system without it): rename in two steps
    raise OSError(failure, os.strerror(failure), str(b))


def _put_back(moved: Path | None, out: Path, made: list[Path]) -> None:
    """Return the folder moved aside to ``out`` when nothing took its place, and keep it from removal."""
    if moved is not None and not os.path.lexists(out):
        os.rename(moved, out)
        made.remove(moved)


def json_safe(value):
    """Recursively turn numpy scalars/arrays into Python types; refuse NaN/Infinity (invalid JSON)."""
    import numpy as np

    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"non-finite number {value} cannot be written as JSON")
    return value


def text_writer(text: str) -> Writer:
    """A writer of ``text`` as UTF-8."""
    return lambda tmp: tmp.write_text(text, encoding="utf-8")


def json_writer(data: dict) -> Writer:
    """A writer of ``data`` as strict JSON (no NaN/Infinity literals), serialised now, before any file exists."""
    return text_writer(json.dumps(json_safe(data), indent=2, allow_nan=False) + "\n")


def npz_writer(arrays: dict) -> Writer:
    """A writer of numpy arrays (no object arrays, so loadable with ``allow_pickle=False``)."""
    import numpy as np

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)

    return write


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` as UTF-8, atomically."""
    return write_atomic(path, text_writer(text))


def write_json(path: str | os.PathLike, data: dict) -> Path:
    """Write ``data`` as strict JSON (no NaN/Infinity literals), atomically."""
    return write_atomic(path, json_writer(data))


def write_npz(path: str | os.PathLike, arrays: dict) -> Path:
    """Write numpy arrays (no object arrays, so loadable with ``allow_pickle=False``), atomically."""
    return write_atomic(path, npz_writer(arrays))
