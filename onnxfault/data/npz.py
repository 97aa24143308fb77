"""``.npz`` archives with arrays ``x`` (samples) and ``y`` (labels), read without pickle.

``y`` is loaded whole (one number per sample); ``x`` is streamed row block by row block straight from
its zip member (decompressing on the fly), so memory does not grow with the number of samples.
"""
from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import OnnxFaultError
from .source import Source, as_labels, guess_layout, stream_rows


def _header(fh, path: Path) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, fortran_order, dtype) of an .npy stream, leaving ``fh`` at the first data byte."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(fh)
        if version not in ((1, 0), (2, 0)):
            raise ValueError(f".npy format {version[0]}.{version[1]} is not supported; save with numpy's default")
        return fmt.read_array_header_1_0(fh) if version == (1, 0) else fmt.read_array_header_2_0(fh)
    except ValueError as err:
        raise OnnxFaultError(f"cannot read array 'x' in {path}: {err}; store plain numeric arrays") from err


def open_npz(path: Path) -> Source:
    try:
        with zipfile.ZipFile(path) as archive:
            members = {Path(n).stem: n for n in archive.namelist() if n.endswith(".npy")}
            missing = [k for k in ("x", "y") if k not in members]
            if missing:
                raise OnnxFaultError(f"{path} has arrays {sorted(members)}; it needs 'x' (samples) and 'y' (labels)")
            with archive.open(members["y"]) as fh:
                y = np.lib.format.read_array(fh, allow_pickle=False)
            with archive.open(members["x"]) as fh:
                shape, fortran, dtype = _header(fh, path)
    except ValueError as err:  # object arrays need pickle: refused
        raise OnnxFaultError(f"cannot read {path}: {err}; store plain numeric arrays") from err
    except (OSError, zipfile.BadZipFile, EOFError) as err:
        raise OnnxFaultError(f"cannot read {path}: {err}; the file is corrupt or not an .npz") from err
    if dtype.kind not in "uif" or len(shape) < 2:
        raise OnnxFaultError(f"array 'x' in {path} has type {dtype} and shape {shape}; "
                             "expected numbers, one sample per row")
    y = as_labels(y, str(path))
    if shape[0] != len(y):
        raise OnnxFaultError(f"{path} holds {shape[0]} samples in 'x' but {len(y)} labels in 'y'; they must match")
    sample_shape = tuple(shape[1:])

    def chunks(rows: int) -> Iterator[np.ndarray]:
        with zipfile.ZipFile(path) as zf, zf.open(members["x"]) as fh:
            _header(fh, path)
            if fortran:  # column-major rows are not contiguous: read whole (rare for data sets)
                data = np.frombuffer(fh.read(), dtype).reshape(shape, order="F").astype(dtype.newbyteorder("="))
                for start in range(0, shape[0], rows):
                    yield np.ascontiguousarray(data[start:start + rows])
                return

            def read(size: int) -> bytes:
                block = fh.read(size)
                if len(block) != size:
                    raise OnnxFaultError(f"array 'x' in {path} ends early; the file is truncated")
                return block

            yield from stream_rows(read, shape[0], sample_shape, dtype, rows)

    return Source(f"npz {path.name}", y, sample_shape, guess_layout(sample_shape), dtype.newbyteorder("="), chunks)
