"""What every data reader returns: labels up front, samples streamed in consecutive chunks."""
from __future__ import annotations

import math
import mmap
import os
import stat
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from ..errors import OnnxFaultError, file_kind

# Limits checked against the shapes a file declares, before any array is read: a few bytes of header must
# not make the process allocate gigabytes. Far above any classifier's data set, far below a machine's memory.
MAX_SAMPLES = 2**24  # labels are held in memory (8 bytes each as int64)
MAX_SAMPLE_ELEMENTS = 2**26  # numbers in one sample (e.g. 3×4096×4096 fits)
MAX_DEFLATE_RATIO = 1032  # deflate (zip, gzip) cannot expand data more than this

@dataclass
class Source:
    """A labelled data set. ``chunks(rows, first)`` yields consecutive sample blocks of up to ``rows`` rows,
    from sample ``first`` on (readers that can seek go there directly; others read past what comes before).

    ``layout`` is ``flat``, ``hw``, ``hwc``, ``chw`` or None when unknown (e.g. an .npz of 3-D samples).
    """

    description: str
    labels: np.ndarray  # int64, one per sample
    sample_shape: tuple[int, ...]
    layout: str | None
    dtype: np.dtype
    chunks: Callable[[int, int], Iterator[np.ndarray]]
    class_names: tuple[str, ...] | None = None  # class folders: the folder of each class, in class order
    sample_rate: int | None = None  # waveforms (layout ``wave``): samples per second

    def __len__(self) -> int:
        return len(self.labels)


READ_ERRORS = (OSError, EOFError, zipfile.BadZipFile, zlib.error)  # what reading a (compressed) file raises


def read_exact(fh, size: int, what: str) -> bytes:
    """Exactly ``size`` bytes from ``fh``; a read that fails or ends early is an error naming ``what``."""
    try:
        block = fh.read(size)
    except READ_ERRORS as err:
        raise OnnxFaultError(f"cannot read {what}: {err}; the file is corrupt or truncated") from None
    if len(block) != size:
        raise OnnxFaultError(f"{what} ends early ({len(block)} of {size} bytes in a block); the file is truncated")
    return block


SKIP_BYTES = 1 << 24  # readers that cannot seek read past skipped samples this many bytes at a time


def stream_rows(read: Callable[[int], bytes], count: int, sample_shape: tuple[int, ...], dtype: np.dtype,
                rows: int, first: int = 0) -> Iterator[np.ndarray]:
    """Samples ``first`` … ``count`` - 1 from ``read(size)`` (exactly ``size`` bytes, or it raises), positioned
    at sample 0, in consecutive blocks of up to ``rows`` samples, in native byte order; the ``first`` samples
    are read past in bounded pieces."""
    row_bytes = math.prod(sample_shape) * dtype.itemsize
    skip = first * row_bytes
    while skip:
        piece = min(skip, SKIP_BYTES)
        read(piece)
        skip -= piece
    for start in range(first, count, rows):
        n = min(rows, count - start)
        block = np.frombuffer(read(n * row_bytes), dtype)
        yield block.astype(dtype.newbyteorder("="), copy=False).reshape((n, *sample_shape))


WINDOW_BYTES = 1 << 22  # memory-mapped readers map this much of a file at a time (whole batches, at least one)
WHOLE_MAP_BYTES = 1 << 24  # ... unless all they read is at most this much: then it is mapped in one go
_POPULATE = getattr(mmap, "MAP_POPULATE", 0)  # Linux: the kernel maps a window's pages in one go, not page by page


def _map_window(fileno: int, length: int, offset: int) -> mmap.mmap:
    if hasattr(mmap, "MAP_SHARED"):
        return mmap.mmap(fileno, length, flags=mmap.MAP_SHARED | _POPULATE, prot=mmap.PROT_READ, offset=offset)
    return mmap.mmap(fileno, length, access=mmap.ACCESS_READ, offset=offset)


def mapped_rows(path: Path, offset: int, count: int, sample_shape: tuple[int, ...], dtype: np.dtype, rows: int,
                first: int = 0) -> Iterator[np.ndarray]:
    """Samples ``first`` … ``count`` - 1 of an uncompressed array at byte ``offset`` of ``path`` (the caller has
    checked that it fits in the file), as ``stream_rows`` gives them but without reading: each block is a view
    of a read-only memory map (a copy only for a foreign byte order or a misaligned type). The file is mapped a
    window of whole blocks at a time (all of it in one window when it is small) and a window is unmapped once no
    block of it is held, so resident memory stays flat."""
    per_sample = math.prod(sample_shape)
    row_bytes = per_sample * dtype.itemsize
    window_rows = rows * max(1, WINDOW_BYTES // max(1, rows * row_bytes))
    if (count - first) * row_bytes <= WHOLE_MAP_BYTES:
        window_rows = max(1, count - first)
    with open(path, "rb") as fh:
        for window_start in range(first, count, window_rows):
            window_count = min(window_rows, count - window_start)
            begin = offset + window_start * row_bytes
            aligned = begin - begin % mmap.ALLOCATIONGRANULARITY
            try:
                window = _map_window(fh.fileno(), begin - aligned + window_count * row_bytes, aligned)
            except (OSError, ValueError) as err:  # e.g. the file was cut short since its header was checked
                raise OnnxFaultError(f"cannot read {path}: {err}; the file was truncated or changed") from None
            for start in range(0, window_count, rows):
                n = min(rows, window_count - start)
                at = begin - aligned + start * row_bytes
                block = np.frombuffer(window, dtype, n * per_sample, at).astype(dtype.newbyteorder("="), copy=False)
                yield (block if block.flags.aligned else block.copy()).reshape((n, *sample_shape))


def as_labels(values, where: str) -> np.ndarray:
    """Integer labels as int64; refuse non-integral or negative values."""
    try:
        labels = np.asarray(values)
    except (ValueError, TypeError, RecursionError) as err:
        raise OnnxFaultError(f"labels in {where} are not a list of numbers ({type(err).__name__}); "
                             "give integer class indices") from None
    if labels.ndim != 1:
        raise OnnxFaultError(f"labels in {where} have shape {labels.shape}; expected one label per sample")
    if labels.dtype.kind == "f":
        if not np.all(np.isfinite(labels)) or not np.all(labels == np.round(labels)):
            raise OnnxFaultError(f"labels in {where} are not whole numbers; give integer class indices")
    elif labels.dtype.kind not in "iu":
        raise OnnxFaultError(f"labels in {where} have type {labels.dtype}; give integer class indices")
    labels = labels.astype(np.int64)
    if labels.size and labels.min() < 0:
        raise OnnxFaultError(f"labels in {where} contain negative values; give class indices 0..C-1")
    return labels


def guess_layout(sample_shape: tuple[int, ...]) -> str | None:
    """Layout from the shape alone: 3-D samples with 1, 3 or 4 channels on exactly one end."""
    if len(sample_shape) == 1:
        return "flat"
    if len(sample_shape) == 2:
        return "hw"
    if len(sample_shape) == 3:
        first, last = sample_shape[0] in (1, 3, 4), sample_shape[-1] in (1, 3, 4)
        if last and not first:
            return "hwc"
        if first and not last:
            return "chw"
    return None


def in_memory(description: str, x: np.ndarray, labels: np.ndarray, layout: str | None) -> Source:
    """A Source over arrays already in memory."""

    def chunks(rows: int, first: int = 0) -> Iterator[np.ndarray]:
        for start in range(first, len(x), rows):
            yield x[start:start + rows]

    return Source(description, labels, tuple(x.shape[1:]), layout, x.dtype, chunks)


def check_input_path(path: Path, flag: str = "--data", what: str = "data path") -> os.stat_result:
    """``path``'s stat, refusing what cannot be read as data without blocking: FIFOs, sockets, devices,
    empty or virtual files (``/proc``), symlink loops; a folder is fine."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise OnnxFaultError(f"{what} {path} does not exist; check {flag}") from None
    except OSError as err:
        raise OnnxFaultError(f"cannot open {path}: {err.strerror or err}; check {flag}") from None
    if stat.S_ISDIR(info.st_mode):
        return info
    if not stat.S_ISREG(info.st_mode):
        raise OnnxFaultError(f"{path} is {file_kind(info.st_mode)}, not a regular file or folder; "
                             f"give {flag} a data file or a folder")
    if info.st_size == 0:
        raise OnnxFaultError(f"{path} is empty (or a virtual file such as /proc/…); give {flag} a data file")
    return info


def check_npz(path: Path, what: str) -> None:
    """Refuse an npz that cannot be read safely before numpy reads it: not a regular file (a FIFO blocks), or a
    member that declares more bytes than its compressed size can hold (a 2 MiB file claiming gigabytes)."""
    info = check_input_path(path, what, "file")
    if stat.S_ISDIR(info.st_mode):
        raise OnnxFaultError(f"{path} is a folder, not an npz file; check {what}")
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (OSError, zipfile.BadZipFile, EOFError) as err:
        raise OnnxFaultError(f"cannot read {path} ({type(err).__name__}: {err}); check {what}") from err
    for member in members:
        stored = member.compress_type == zipfile.ZIP_STORED
        if (stored and member.file_size != member.compress_size) or \
                member.file_size > max(member.compress_size, 1) * MAX_DEFLATE_RATIO or member.compress_size > info.st_size:
            raise OnnxFaultError(f"{path}: member {member.filename} claims {member.file_size:,} bytes from "
                                 f"{member.compress_size:,} stored, more than the file can hold; it is damaged or "
                                 f"hostile; check {what}")


def class_notes(source: Source, shown: int = 12) -> list[str]:
    """For data from class folders: which folder is which class (``0=zero, 1=one, …``), as a note."""
    names = getattr(source, "class_names", None)  # a stream of batches in memory has none
    if not names:
        return []
    pairs = [f"{i}={name}" for i, name in enumerate(names[:shown])]
    more = f", … ({len(names)} classes)" if len(names) > shown else ""
    return [f"{source.description}: class numbers by folder {', '.join(pairs)}{more}"]


def class_record(source: Source) -> dict:
    """What a result file records of the data's classes: ``class_names`` for class folders, else nothing."""
    names = getattr(source, "class_names", None)
    return {"class_names": list(names)} if names else {}


def check_declared(shape: tuple[int, ...], dtype: np.dtype, available: int | None, what: str,
                   samples: bool = True) -> int:
    """The data bytes an array header declares, refusing shapes that disagree with the bytes ``available``
    (None: unknown) or exceed the limits; ``samples``: axis 0 counts samples, the rest is one sample."""
    if any(not isinstance(d, int) or d < 0 for d in shape):
        raise OnnxFaultError(f"{what} declares an invalid shape {shape}; the file is corrupt")
    size = math.prod(shape) * dtype.itemsize
    if available is not None and size > available:
        raise OnnxFaultError(f"{what} declares shape {tuple(shape)} ({size:,} bytes) but holds at most "
                             f"{available:,} bytes; the file is truncated or corrupt")
    if samples and shape and shape[0] > MAX_SAMPLES:
        raise OnnxFaultError(f"{what} declares {shape[0]:,} samples, over onnxfault's limit of {MAX_SAMPLES:,}; "
                             "split the data set into smaller files")
    per_sample = math.prod(shape[1:]) if samples else 1
    if per_sample > MAX_SAMPLE_ELEMENTS:
        raise OnnxFaultError(f"{what} declares samples of shape {tuple(shape[1:])} ({per_sample:,} numbers), over "
                             f"onnxfault's limit of {MAX_SAMPLE_ELEMENTS:,} per sample; resize the samples")
    return size
