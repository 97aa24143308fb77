"""``.npz`` archives with arrays ``x`` (samples) and ``y`` (labels), loaded without pickle."""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from ..errors import OnnxFaultError
from .source import Source, as_labels, guess_layout, in_memory


def open_npz(path: Path) -> Source:
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [k for k in ("x", "y") if k not in archive.files]
            if missing:
                raise OnnxFaultError(f"{path} has arrays {archive.files}; it needs 'x' (samples) and 'y' (labels)")
            x, y = archive["x"], archive["y"]
    except ValueError as err:  # object arrays need pickle: refused
        raise OnnxFaultError(f"cannot read {path}: {err}; store plain numeric arrays") from err
    except (OSError, zipfile.BadZipFile, EOFError) as err:
        raise OnnxFaultError(f"cannot read {path}: {err}; the file is corrupt or not an .npz") from err
    if x.dtype.kind not in "uif" or x.ndim < 2:
        raise OnnxFaultError(f"array 'x' in {path} has type {x.dtype} and shape {x.shape}; "
                             "expected numbers, one sample per row")
    y = as_labels(y, str(path))
    if len(x) != len(y):
        raise OnnxFaultError(f"{path} holds {len(x)} samples in 'x' but {len(y)} labels in 'y'; they must match")
    return in_memory(f"npz {path.name}", x, y, guess_layout(tuple(x.shape[1:])))
