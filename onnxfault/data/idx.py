"""MNIST-style IDX files (``.gz`` or raw), read in streamed chunks (raw ones memory-mapped)."""
from __future__ import annotations

import gzip
import math
import os
import struct
from pathlib import Path
from typing import BinaryIO, Iterator

import numpy as np

from ..errors import OnnxFaultError
from .source import (MAX_DEFLATE_RATIO, READ_ERRORS, Source, as_labels, check_declared, check_input_path,
                     mapped_rows, read_exact, stream_rows)

_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def is_idx(head: bytes) -> bool:
    return len(head) >= 4 and head[0] == 0 and head[1] == 0 and head[2] in _TYPES and 1 <= head[3] <= 4


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


def _open(path: Path) -> BinaryIO:
    return gzip.open(path, "rb") if _is_gzip(path) else open(path, "rb")


def _header(fh: BinaryIO, path: Path) -> tuple[np.dtype, tuple[int, ...]]:
    try:
        head = fh.read(4)
        if not is_idx(head):
            raise OnnxFaultError(f"{path} is not an IDX file (bad magic number); give MNIST-style *-ubyte files")
        ndim = head[3]
        raw = fh.read(4 * ndim)
    except READ_ERRORS as err:
        raise OnnxFaultError(f"cannot read {path}: {err}; the file is corrupt or truncated") from err
    if len(raw) != 4 * ndim:
        raise OnnxFaultError(f"{path} ends inside its header; the file is truncated")
    return np.dtype(_TYPES[head[2]]), struct.unpack(f">{ndim}I", raw)


def read_header(path: Path) -> tuple[np.dtype, tuple[int, ...]]:
    """Type and shape an IDX file declares, checked against the bytes the file can hold (a .gz at most
    ``MAX_DEFLATE_RATIO`` times its size) and against onnxfault's limits, before any data is read."""
    with _open(path) as fh:
        dtype, shape = _header(fh, path)
    size = os.stat(path).st_size
    available = size * MAX_DEFLATE_RATIO if _is_gzip(path) else size - 4 - 4 * len(shape)
    check_declared(shape, dtype, available, f"IDX file {path}", samples=len(shape) > 1)
    return dtype, shape


def read_idx_array(path: Path) -> np.ndarray:
    """A whole IDX file as a native-endian array (for labels), its header checked first."""
    dtype, shape = read_header(path)
    with _open(path) as fh:
        _header(fh, path)
        data = read_exact(fh, math.prod(shape) * dtype.itemsize, str(path))
    return np.frombuffer(data, dtype).astype(dtype.newbyteorder("="), copy=False).reshape(shape)


def labels_path_for(images: Path) -> Path:
    """``t10k-images-idx3-ubyte.gz`` → ``t10k-labels-idx1-ubyte.gz`` in the same folder."""
    name = images.name.replace("images", "labels").replace("idx3", "idx1")
    return images.with_name(name)


def images_path_for(labels: Path) -> Path:
    """``t10k-labels-idx1-ubyte.gz`` → ``t10k-images-idx3-ubyte.gz`` in the same folder."""
    return labels.with_name(labels.name.replace("labels", "images").replace("idx1", "idx3"))


def _labels_given_as_data(path: Path) -> OnnxFaultError:
    images = images_path_for(path)
    fix = (f"pass `data` {images}" if images != path and images.is_file()
           else "pass the images file (e.g. t10k-images-idx3-ubyte.gz) as `data`")
    return OnnxFaultError(f"{path} is an IDX labels file (one number per sample), not images; {fix}")


def _labels_file(path: Path, labels: Path | None) -> Path:
    if labels is None:
        labels = labels_path_for(path)
        if labels == path or not labels.is_file():
            raise OnnxFaultError(f"no labels file found beside {path} (looked for {labels.name}); "
                                 "pass `labels` PATH")
    check_input_path(labels, "`labels`", "labels file")
    if labels.is_dir():
        raise OnnxFaultError(f"labels file {labels} is a folder; check `labels`")
    return labels


def open_idx(path: Path, labels: Path | None = None) -> Source:
    """Images from ``path``, labels from ``labels`` or from the file found beside it by name.

    Both headers are checked (shapes, sizes, counts) before any data is read."""
    dtype, shape = read_header(path)
    if len(shape) == 1:
        raise _labels_given_as_data(path)
    labels = _labels_file(path, labels)
    _, label_shape = read_header(labels)
    if len(label_shape) != 1:
        raise OnnxFaultError(f"labels file {labels} holds an array of shape {tuple(label_shape)}, not one label "
                             "per sample; pass the *-labels-idx1-* file with `labels`")
    if shape[0] != label_shape[0]:
        raise OnnxFaultError(f"{path} holds {shape[0]} images but {labels} holds {label_shape[0]} labels; "
                             "pass the matching `labels` file")
    y = as_labels(read_idx_array(labels), str(labels))
    sample_shape = tuple(shape[1:])

    def chunks(rows: int, first: int = 0) -> Iterator[np.ndarray]:
        if not _is_gzip(path) and math.prod(shape):  # raw: memory-mapped (its size was checked with the header)
            yield from mapped_rows(path, 4 + 4 * len(shape), shape[0], sample_shape, dtype, rows, first)
            return
        with _open(path) as fh:
            _header(fh, path)
            yield from stream_rows(lambda size: read_exact(fh, size, str(path)), shape[0], sample_shape, dtype, rows,
                                   first)

    layout = "hw" if len(sample_shape) == 2 else None
    return Source(f"IDX {path.name}", y, sample_shape, layout, dtype.newbyteorder("="), chunks)
