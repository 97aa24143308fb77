"""Output files written atomically: a temp file beside the target, then a rename.

A failed run never leaves a half-written file behind.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Callable

from .errors import OnnxFaultError


def check_writable(path: str | os.PathLike, what: str = "output") -> Path:
    """Fail early (before any work) when ``path`` cannot be written."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise OnnxFaultError(f"{what} path {path} is a directory; give a file name")
    if not parent.is_dir():
        raise OnnxFaultError(f"cannot write {what} {path}: folder {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise OnnxFaultError(f"cannot write {what} {path}: permission denied; choose a writable path")
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` then rename ``tmp_path`` to ``path``; remove the temp file on failure."""
    path = check_writable(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix or ".tmp", dir=path.parent or ".")
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual mode
        os.replace(tmp_path, path)
    except OSError as err:
        tmp_path.unlink(missing_ok=True)
        raise OnnxFaultError(f"cannot write {path}: {err.strerror or err}; choose a writable path") from err
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    return path


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


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` as UTF-8, atomically."""
    return write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json(path: str | os.PathLike, data: dict) -> Path:
    """Write ``data`` as strict JSON (no NaN/Infinity literals), atomically."""
    return write_text(path, json.dumps(json_safe(data), indent=2, allow_nan=False) + "\n")


def write_npz(path: str | os.PathLike, arrays: dict) -> Path:
    """Write numpy arrays (no object arrays, so loadable with ``allow_pickle=False``), atomically."""
    import numpy as np

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)

    return write_atomic(path, write)
