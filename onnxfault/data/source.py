"""What every data reader returns: labels up front, samples streamed in consecutive chunks."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from ..errors import OnnxFaultError

@dataclass
class Source:
    """A labelled data set. ``chunks(rows)`` yields consecutive sample blocks of up to ``rows`` rows.

    ``layout`` is ``flat``, ``hw``, ``hwc``, ``chw`` or None when unknown (e.g. an .npz of 3-D samples).
    """

    description: str
    labels: np.ndarray  # int64, one per sample
    sample_shape: tuple[int, ...]
    layout: str | None
    dtype: np.dtype
    chunks: Callable[[int], Iterator[np.ndarray]]

    def __len__(self) -> int:
        return len(self.labels)


def stream_rows(read: Callable[[int], bytes], count: int, sample_shape: tuple[int, ...], dtype: np.dtype,
                rows: int) -> Iterator[np.ndarray]:
    """``count`` samples from ``read(size)`` (exactly ``size`` bytes, or it raises), in consecutive blocks of
    up to ``rows`` samples, in native byte order."""
    row_bytes = int(np.prod(sample_shape)) * dtype.itemsize
    for start in range(0, count, rows):
        n = min(rows, count - start)
        block = np.frombuffer(read(n * row_bytes), dtype)
        yield block.astype(dtype.newbyteorder("="), copy=False).reshape((n, *sample_shape))


def as_labels(values, where: str) -> np.ndarray:
    """Integer labels as int64; refuse non-integral or negative values."""
    labels = np.asarray(values)
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

    def chunks(rows: int) -> Iterator[np.ndarray]:
        for start in range(0, len(x), rows):
            yield x[start:start + rows]

    return Source(description, labels, tuple(x.shape[1:]), layout, x.dtype, chunks)
