"""MNIST-style IDX files (``.gz`` or raw), read in streamed chunks."""
from __future__ import annotations

import gzip
import struct
from pathlib import Path
from typing import BinaryIO, Iterator

import numpy as np

from ..errors import OnnxFaultError
from .source import Source, as_labels, stream_rows

_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def is_idx(head: bytes) -> bool:
    return len(head) >= 4 and head[0] == 0 and head[1] == 0 and head[2] in _TYPES and 1 <= head[3] <= 4


def _open(path: Path) -> BinaryIO:
    with open(path, "rb") as fh:
        gz = fh.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rb") if gz else open(path, "rb")


def _header(fh: BinaryIO, path: Path) -> tuple[np.dtype, tuple[int, ...]]:
    head = fh.read(4)
    if not is_idx(head):
        raise OnnxFaultError(f"{path} is not an IDX file (bad magic number); give MNIST-style *-ubyte files")
    ndim = head[3]
    raw = fh.read(4 * ndim)
    if len(raw) != 4 * ndim:
        raise OnnxFaultError(f"{path} ends inside its header; the file is truncated")
    return np.dtype(_TYPES[head[2]]), struct.unpack(f">{ndim}I", raw)


def _read_exact(fh: BinaryIO, size: int, path: Path) -> bytes:
    try:
        data = fh.read(size)
    except (OSError, EOFError) as err:
        raise OnnxFaultError(f"cannot read {path}: {err}; the file is corrupt or truncated") from err
    if len(data) != size:
        raise OnnxFaultError(f"{path} ends early ({len(data)} of {size} bytes in a block); the file is truncated")
    return data


def read_idx_array(path: Path) -> np.ndarray:
    """A whole IDX file as a native-endian array (for labels)."""
    with _open(path) as fh:
        dtype, shape = _header(fh, path)
        data = _read_exact(fh, int(np.prod(shape)) * dtype.itemsize, path)
    return np.frombuffer(data, dtype).astype(dtype.newbyteorder("="), copy=False).reshape(shape)


def labels_path_for(images: Path) -> Path:
    """``t10k-images-idx3-ubyte.gz`` → ``t10k-labels-idx1-ubyte.gz`` in the same folder."""
    name = images.name.replace("images", "labels").replace("idx3", "idx1")
    return images.with_name(name)


def open_idx(path: Path, labels: Path | None = None) -> Source:
    """Images from ``path``, labels from ``labels`` or from the file found beside it by name."""
    if labels is None:
        labels = labels_path_for(path)
        if labels == path or not labels.is_file():
            raise OnnxFaultError(f"no labels file found beside {path} (looked for {labels.name}); "
                                 "pass --labels PATH")
    elif not labels.is_file():
        raise OnnxFaultError(f"labels file {labels} does not exist; check --labels")
    y = as_labels(read_idx_array(labels), str(labels))
    with _open(path) as fh:
        dtype, shape = _header(fh, path)
    if shape[0] != len(y):
        raise OnnxFaultError(f"{path} holds {shape[0]} images but {labels} holds {len(y)} labels; "
                             "pass the matching --labels file")
    sample_shape = tuple(shape[1:])

    def chunks(rows: int) -> Iterator[np.ndarray]:
        with _open(path) as fh:
            _header(fh, path)
            yield from stream_rows(lambda size: _read_exact(fh, size, path), shape[0], sample_shape, dtype, rows)

    layout = "hw" if len(sample_shape) == 2 else None
    return Source(f"IDX {path.name}", y, sample_shape, layout, dtype.newbyteorder("="), chunks)
