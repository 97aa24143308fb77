"""``.npz`` archives with arrays ``x`` (samples) and ``y`` (labels), read without pickle; or, for a model with
several inputs (token ids and an attention mask, …), ``y`` and one array per input named after it, read as
records with a field per array (:func:`~onnxfault.runtime.records`).

``y`` is loaded whole (one number per sample); ``x`` is streamed row block by row block straight from
its zip member, so memory does not grow with the number of samples: a stored member (``numpy.savez``) is
memory-mapped and its blocks are views of the file (its zip headers and size are checked, its CRC-32 is not,
as with ``numpy.load(mmap_mode="r")``); a compressed one is decompressed on the fly and CRC-checked by zipfile.
"""
from __future__ import annotations

import math
import os
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import OnnxFaultError
from .source import (MAX_DEFLATE_RATIO, READ_ERRORS, Source, as_labels, check_declared, guess_layout,
                     mapped_rows, read_exact, stream_rows)

_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflated"}  # what numpy.savez[_compressed] writes
MAX_FORTRAN_BYTES = 2**29  # a column-major 'x' is read whole


@dataclass(frozen=True)
class _Array:
    """One .npy member as its header declares it; ``available``: data bytes the member holds; ``header``: the
    bytes of its .npy header; ``info``: its zip entry."""

    member: str
    shape: tuple[int, ...]
    fortran: bool
    dtype: np.dtype
    available: int
    header: int
    info: zipfile.ZipInfo


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
    return _Array(member, tuple(shape), fortran, dtype, info.file_size - header_bytes, header_bytes, info)


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


def _labels(archive: zipfile.ZipFile, y: _Array, what: str) -> np.ndarray:
    with archive.open(y.member) as fh:
        read_exact(fh, y.header, what)  # parsed by _array
        data = read_exact(fh, math.prod(y.shape) * y.dtype.itemsize, what)
    return np.frombuffer(data, y.dtype).astype(y.dtype.newbyteorder("="))


_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")  # a zip entry's local header (APPNOTE 4.3.7), before its name
_LOCAL_SIGNATURE = b"PK\x03\x04"


def _stored_start(path: Path, x: _Array) -> int | None:
    """Where the stored member of ``x`` starts in the file, when its data can be memory-mapped: stored (no
    compression), not encrypted, C-ordered and not empty, with a local header that agrees with the central
    directory and bytes that lie inside the file. None otherwise (then zipfile reads it, and reports what is
    wrong)."""
    info = x.info
    if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 1 or x.fortran or not math.prod(x.shape):
        return None
    try:
        with open(path, "rb") as fh:
            fh.seek(info.header_offset)
            head = fh.read(_LOCAL_HEADER.size)
            if len(head) != _LOCAL_HEADER.size:
                return None
            signature, _, _, _, method, _, _, _, _, _, name_length, extra_length = _LOCAL_HEADER.unpack(head)
            name = fh.read(name_length)
        size = os.stat(path).st_size
    except OSError:
        return None
    encoding = "utf-8" if info.flag_bits & 0x800 else "cp437"
    if (signature != _LOCAL_SIGNATURE or method != zipfile.ZIP_STORED or info.compress_size != info.file_size
            or name.decode(encoding, "replace") != info.orig_filename):
        return None
    start = info.header_offset + _LOCAL_HEADER.size + name_length + extra_length
    return start if start + info.file_size <= size else None


def _mapped(path: Path, x: _Array, start: int, rows: int, first: int) -> Iterator[np.ndarray]:
    """Blocks of the stored ``x`` as views of the memory-mapped file. Its CRC-32 is not checked (as
    ``numpy.load(mmap_mode="r")`` does not): that would read every byte once more, a cost on the order of
    the model's own time for small models. Its headers and size were checked when the file was opened."""
    yield from mapped_rows(path, start + x.header, x.shape[0], tuple(x.shape[1:]), x.dtype, rows, first)


def open_npz(path: Path) -> Source:
    """``x`` and ``y`` from an .npz: both headers are checked (types, sizes, counts) before ``y`` is read. An
    archive without ``x`` holds one array per model input beside ``y``: read as records (:func:`_open_members`)."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = {Path(n).stem: n for n in archive.namelist() if n.endswith(".npy")}
            if "y" not in members or ("x" not in members and len(members) < 2):
                raise OnnxFaultError(f"{path} has arrays {sorted(members)}; it needs 'x' (samples) and 'y' (labels), "
                                     "or 'y' and one array per model input named after it")
            if "x" not in members:
                return _open_members(path, archive, members)
            x = _array(archive, members["x"], f"array 'x' in {path}")
            y_array = _array(archive, members["y"], f"array 'y' in {path}")
            _check(x, y_array, path)
            y = _labels(archive, y_array, f"array 'y' in {path}")
    except READ_ERRORS as err:
        raise OnnxFaultError(f"cannot read {path}: {err}; the file is corrupt or not an .npz") from None
    y = as_labels(y, str(path))
    sample_shape = tuple(x.shape[1:])
    return Source(f"npz {path.name}", y, sample_shape, guess_layout(sample_shape), x.dtype.newbyteorder("="),
                  _member_chunks(path, x))


def _member_chunks(path: Path, x: _Array):
    """``chunks(rows, first)`` of the array ``x`` of ``path``: memory-mapped when stored, else streamed."""
    shape, dtype, what = x.shape, x.dtype, f"array '{x.member[:-4]}' in {path}"
    sample_shape = tuple(shape[1:])
    mapped_at = _stored_start(path, x)

    def chunks(rows: int, first: int = 0) -> Iterator[np.ndarray]:
        if mapped_at is not None:
            yield from _mapped(path, x, mapped_at, rows, first)
            return
        try:
            with zipfile.ZipFile(path) as zf, zf.open(x.member) as fh:
                _header(fh, what)
                if x.fortran:  # column-major rows are not contiguous: read whole (bounded by MAX_FORTRAN_BYTES)
                    raw = read_exact(fh, math.prod(shape) * dtype.itemsize, what)
                    data = np.frombuffer(raw, dtype).reshape(shape, order="F").astype(dtype.newbyteorder("="))
                    for start in range(first, shape[0], rows):
                        yield np.ascontiguousarray(data[start:start + rows])
                    return
                yield from stream_rows(lambda size: read_exact(fh, size, what), shape[0], sample_shape, dtype, rows, first)
        except READ_ERRORS as err:
            raise OnnxFaultError(f"cannot read {path}: {err}; the file is corrupt or not an .npz") from None

    return chunks


def _open_members(path: Path, archive: zipfile.ZipFile, members: dict[str, str]) -> Source:
    """``y`` and every other array of the archive, in name order, as records with a field per array: each
    array is checked as ``x`` would be (numbers or bools, one row per sample, as many rows as labels) and
    streamed on its own; a chunk joins the arrays' rows."""
    y_array = _array(archive, members["y"], f"array 'y' in {path}")
    arrays = {}
    for name in sorted(k for k in members if k != "y"):
        array = _array(archive, members[name], f"array '{name}' in {path}")
        if array.dtype.kind == "b":  # a bool mask is read as uint8 bytes and kept as bool
            array = _Array(array.member, array.shape, array.fortran, np.dtype(np.uint8), array.available,
                           array.header, array.info)
            arrays[name] = (array, np.dtype(np.bool_))
        else:
            arrays[name] = (array, array.dtype)
        try:
            _check(array, y_array, path)
        except OnnxFaultError as err:
            raise OnnxFaultError(str(err).replace("'x'", f"'{name}'")) from None
    y = as_labels(_labels(archive, y_array, f"array 'y' in {path}"), str(path))
    readers = {name: (_member_chunks(path, array), kind) for name, (array, kind) in arrays.items()}
    dtype = np.dtype([(name, kind.newbyteorder("="), array.shape[1:]) for name, (array, kind) in arrays.items()])

    def chunks(rows: int, first: int = 0) -> Iterator[np.ndarray]:
        streams = {name: read(rows, first) for name, (read, _) in readers.items()}
        for start in range(first, len(y), rows):
            block = np.empty(min(rows, len(y) - start), dtype)
            for name, stream in streams.items():
                block[name] = next(stream).view(dtype[name].base)
            yield block

    return Source(f"npz {path.name}", y, (), None, dtype, chunks)
