"""``.npz`` archives with arrays ``x`` (samples) and ``y`` (labels), read without pickle.

``y`` is loaded whole (one number per sample); ``x`` is streamed row block by row block straight from
its zip member (decompressing on the fly), so memory does not grow with the number of samples.
"""
from __future__ import annotations

import math
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import OnnxFaultError
from .source import MAX_DEFLATE_RATIO, Source, as_labels, check_declared, guess_layout, stream_rows

_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflated"}  # what numpy.savez[_compressed] writes
MAX_FORTRAN_BYTES = 2**29  # a column-major 'x' is read whole
_READ_ERRORS = (OSError, EOFError, zipfile.BadZipFile, zlib.error)


@dataclass(frozen=True)
class _Array:
    """One .npy member as its header declares it; ``available``: data bytes the member holds."""

    member: str
    shape: tuple[int, ...]
    fortran: bool
    dtype: np.dtype
    available: int


def _header(fh, what: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, fortran_order, dtype) of an .npy stream, leaving ``fh`` at the first data byte."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(fh)
        if version not in ((1, 0), (2, 0)):
            raise ValueError(f".npy format {version[0]}.{version[1]} is not supported; save with numpy's default")
        return fmt.read_array_header_1_0(fh) if version == (1, 0) else fmt.read_array_header_2_0(fh)
    except (ValueError, SyntaxError, TypeError, RecursionError) as err:
        raise OnnxFaultError(f"cannot read {what}: {str(err).splitlines()[0] if str(err) else type(err).__name__}; "
                             "store plain numeric arrays") from None


def _array(archive: zipfile.ZipFile, member: str, what: str) -> _Array:
    """The declared shape of ``member``, checked against the bytes the zip entry can hold."""
    info = archive.getinfo(member)
    if info.compress_type not in _METHODS:
        raise OnnxFaultError(f"{what} uses zip compression method {info.compress_type}; save with numpy.savez "
                             "or numpy.savez_compressed")
    if info.file_size > max(info.compress_size, 1) * MAX_DEFLATE_RATIO:
        raise OnnxFaultError(f"{what} claims {info.file_size:,} bytes from {info.compress_size:,} compressed; "
                             "the file is corrupt")
    with archive.open(info) as fh:
        shape, fortran, dtype = _header(fh, what)
        header_bytes = fh.tell()
    return _Array(member, tuple(shape), fortran, dtype, info.file_size - header_bytes)


def _check(x: _Array, y: _Array, path: Path) -> None:
    """Types, ranks, sizes and the x/y sample counts, from the headers alone."""
    for name, array in (("x", x), ("y", y)):
        if array.dtype.hasobject:
            raise OnnxFaultError(f"array '{name}' in {path} has type object (Object arrays cannot be loaded without "
                                 "pickle, which onnxfault never runs); store plain numeric arrays")
    if x.dtype.kind not in "uif" or len(x.shape) < 2:
        raise OnnxFaultError(f"array 'x' in {path} has type {x.dtype} and shape {x.shape}; "
                             "expected numbers, one sample per row")
    if y.dtype.kind not in "uif" or len(y.shape) != 1:
        raise OnnxFaultError(f"array 'y' in {path} has type {y.dtype} and shape {y.shape}; "
                             "expected one integer class index per sample")
    check_declared(y.shape, y.dtype, y.available, f"array 'y' in {path}")
    size = check_declared(x.shape, x.dtype, x.available, f"array 'x' in {path}")
    if x.shape[0] != y.shape[0]:
        raise OnnxFaultError(f"{path} holds {x.shape[0]} samples in 'x' but {y.shape[0]} labels in 'y'; "
                             "they must match")
    if x.shape[0] and not math.prod(x.shape[1:]):
        raise OnnxFaultError(f"array 'x' in {path} has shape {x.shape}: its samples hold no numbers")
    if x.fortran and size > MAX_FORTRAN_BYTES:
        raise OnnxFaultError(f"array 'x' in {path} is column-major (Fortran order) and over "
                             f"{MAX_FORTRAN_BYTES >> 20} MiB; save it C-ordered (np.ascontiguousarray(x))")


def _read(fh, size: int, what: str) -> bytes:
    try:
        block = fh.read(size)
    except _READ_ERRORS as err:
        raise OnnxFaultError(f"cannot read {what}: {err}; the file is corrupt") from None
    if len(block) != size:
        raise OnnxFaultError(f"{what} ends early; the file is truncated")
    return block


def _labels(archive: zipfile.ZipFile, y: _Array, what: str) -> np.ndarray:
    with archive.open(y.member) as fh:
        _header(fh, what)
        data = _read(fh, math.prod(y.shape) * y.dtype.itemsize, what)
    return np.frombuffer(data, y.dtype).astype(y.dtype.newbyteorder("="))


def open_npz(path: Path) -> Source:
    """``x`` and ``y`` from an .npz: both headers are checked (types, sizes, counts) before ``y`` is read."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = {Path(n).stem: n for n in archive.namelist() if n.endswith(".npy")}
            missing = [k for k in ("x", "y") if k not in members]
            if missing:
                raise OnnxFaultError(f"{path} has arrays {sorted(members)}; it needs 'x' (samples) and 'y' (labels)")
            x = _array(archive, members["x"], f"array 'x' in {path}")
            y_array = _array(archive, members["y"], f"array 'y' in {path}")
            _check(x, y_array, path)
            y = _labels(archive, y_array, f"array 'y' in {path}")
    except _READ_ERRORS as err:
        raise OnnxFaultError(f"cannot read {path}: {err}; the file is corrupt or not an .npz") from None
    y = as_labels(y, str(path))
    shape, dtype, what = x.shape, x.dtype, f"array 'x' in {path}"
    sample_shape = tuple(shape[1:])

    def chunks(rows: int, first: int = 0) -> Iterator[np.ndarray]:
        try:
            with zipfile.ZipFile(path) as zf, zf.open(x.member) as fh:
                _header(fh, what)
                if x.fortran:  # column-major rows are not contiguous: read whole (bounded by MAX_FORTRAN_BYTES)
                    raw = _read(fh, math.prod(shape) * dtype.itemsize, what)
                    data = np.frombuffer(raw, dtype).reshape(shape, order="F").astype(dtype.newbyteorder("="))
                    for start in range(first, shape[0], rows):
                        yield np.ascontiguousarray(data[start:start + rows])
                    return
                yield from stream_rows(lambda size: _read(fh, size, what), shape[0], sample_shape, dtype, rows, first)
        except _READ_ERRORS as err:
            raise OnnxFaultError(f"cannot read {path}: {err}; the file is corrupt or not an .npz") from None

    return Source(f"npz {path.name}", y, sample_shape, guess_layout(sample_shape), dtype.newbyteorder("="), chunks)
