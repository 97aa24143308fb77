"""Opening a data set for a model and streaming it in preprocessed float32 batches."""
from __future__ import annotations

import copy
import stat
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from ..errors import OnnxFaultError, check_finite
from .cifar import is_pickle, open_cifar
from .folder import is_image_folder, open_folder
from .idx import is_idx, open_idx
from .layout import Adaptation, channel_axis_of, plan_layout
from .npz import open_npz
from .parquet import MAGIC as PARQUET_MAGIC, open_parquet
from .shards import is_shard_folder, open_shards
from .source import Source, check_input_path

DEFAULT_BATCH_SIZE = 256


@dataclass
class DataOptions:
    """How to read and preprocess samples (mirrors the CLI's data flags)."""

    labels: str | None = None
    limit: int | None = None
    classes: Sequence[int] | None = None
    raw: bool = False
    mean: Sequence[float] | None = None
    std: Sequence[float] | None = None
    layout: str | None = None
    batch_size: int = DEFAULT_BATCH_SIZE

    def __post_init__(self):
        for flag in ("mean", "std"):  # finite numbers only, named by their flag
            for value in getattr(self, flag) or ():
                check_finite(**{flag: value})


def open_source(path: str | Path, labels: str | Path | None = None) -> Source:
    """Pick the reader by content: IDX (raw or gzip), .npz, Parquet, CIFAR pickle batch, image folder or a
    folder of .npz shards."""
    path = Path(path)
    info = check_input_path(path)
    if stat.S_ISDIR(info.st_mode):
        if is_image_folder(path):
            return open_folder(path)
        if is_shard_folder(path):
            return open_shards(path)
        raise OnnxFaultError(f"{path} is a folder without class sub-folders or .npz shards; give a data file, "
                             "root/<class>/ images or a folder of .npz shards")
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
        if head[:2] == b"\x1f\x8b":
            import gzip

            with gzip.open(path, "rb") as fh:
                head = fh.read(4)
    except (OSError, EOFError, zlib.error) as err:
        raise OnnxFaultError(f"cannot read data file {path}: {err}; check that it is readable and not corrupt") from err
    if is_idx(head):
        return open_idx(path, Path(labels) if labels else None)
    if head[:2] == b"PK":
        return open_npz(path)
    if is_pickle(head):
        return open_cifar(path)
    if head == PARQUET_MAGIC:
        return open_parquet(path)
    raise OnnxFaultError(f"{path}: unknown data format; give IDX (*-ubyte[.gz]), .npz with x and y, "
                         "Parquet with x/image and y/label columns, a CIFAR python batch, a folder of class "
                         "folders or a folder of .npz shards")


@dataclass(frozen=True, eq=False)
class Preprocessing:
    """How samples as read become model inputs, in float32: ``x.astype(float32) / divisor``, then ``- mean`` and
    ``/ std`` (arrays that broadcast over a batch) when given. ``dtype`` is the samples' type as read."""

    dtype: np.dtype
    divisor: float = 1.0
    mean: np.ndarray | None = None
    std: np.ndarray | None = None

    def apply(self, x: np.ndarray) -> np.ndarray:
        """``x`` (as read, any shape that broadcasts with mean/std) preprocessed, as a new float32 array."""
        x = x.astype(np.float32)
        if self.divisor != 1.0:
            x /= np.float32(self.divisor)  # x / 255 in float32, exactly as Keras/PyTorch pipelines do
        if self.mean is not None:
            x -= self.mean
            x /= self.std
        return x

    def extremes(self, low: np.ndarray, high: np.ndarray) -> tuple[float, float]:
        """The least and greatest preprocessed value of samples whose values lie in ``low`` … ``high`` (per
        channel when they are shaped like mean/std). Exact: every step is monotonic in each channel (IEEE
        rounding keeps order), so the extremes of the result are the preprocessed extremes of the input."""
        ndim = max([1] + [v.ndim for v in (self.mean, self.std) if v is not None])
        low, high = (np.asarray(v, self.dtype) for v in (low, high))
        ends = np.concatenate([v.reshape((1,) * (ndim - v.ndim) + v.shape) for v in (low, high)])  # (2, …)
        if self.mean is not None:  # room for mean/std's channel axis, so that apply works in place
            ends = np.broadcast_to(ends, np.broadcast_shapes(ends.shape, self.mean.shape, self.std.shape))
        with np.errstate(over="ignore"):  # an overflow is what the callers look for
            values = self.apply(ends)
        return float(values.min()), float(values.max())


class Dataset:
    """The selected samples of a source, adapted to one model input: in float32 batches (``batches``), or as
    read for a session that does the preprocessing in its graph (``feeds`` and ``preprocessing``)."""

    def __init__(self, source: Source, model_shape: tuple[int | None, ...], options: DataOptions,
                 path: str | None = None):
        self.source = source
        self.path = path or source.description
        self.options = options
        self.indices = _select(source.labels, options)
        self.labels = source.labels[self.indices]
        self.adaptation: Adaptation = plan_layout(source.sample_shape, source.layout, model_shape, options.layout)
        self.divisor = 1.0 if options.raw or source.dtype != np.uint8 else 255.0
        out_shape = self.adaptation.apply(np.zeros((1, *source.sample_shape))).shape
        mean, std = _normalizer(options, out_shape, channel_axis_of(self.adaptation.model_layout, len(out_shape)))
        self.preprocessing = Preprocessing(np.dtype(source.dtype), self.divisor, mean, std)
        self._float = np.dtype(source.dtype).kind == "f"
        if not self._float:  # integers are finite: only mean/std can overflow, and the type bounds its values
            info = np.iinfo(source.dtype)
            self._check_range(self.preprocessing.extremes(info.min, info.max), "values of its type")
        if options.batch_size < 1:
            raise OnnxFaultError(f"--batch-size must be at least 1 (got {options.batch_size})")

    def __len__(self) -> int:
        return len(self.indices)

    def shard(self, start: int, stop: int) -> "Dataset":
        """The samples at selection positions ``start`` … ``stop`` - 1, as a data set of their own (same source,
        preprocessing and batch size): shards of one data set are disjoint and together hold every sample."""
        if not 0 <= start < stop <= len(self):
            raise OnnxFaultError(f"shard [{start}, {stop}) is outside the {len(self)} selected samples")
        part = copy.copy(self)
        part.indices, part.labels = self.indices[start:stop], self.labels[start:stop]
        return part

    @property
    def num_batches(self) -> int:
        return -(-len(self) // self.options.batch_size)

    def batches(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(x, y)`` batches of ``batch_size`` samples: float32 inputs and int64 labels."""
        for raw, done in self._blocks():
            yield self._prepare(raw, done), self.labels[done:done + len(raw)]

    def feeds(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(x, y)`` batches of ``batch_size`` samples as read: fitted to the model input's shape (a view or a
        copy in the source's type, C-contiguous), not preprocessed; for a session built with ``preprocessing``
        (``Model.session_for``), whose graph then computes exactly what ``batches`` would give. Float samples
        are checked here (finite, and finite once preprocessed); integer ones were at construction."""
        for raw, done in self._blocks():
            x = np.ascontiguousarray(self.adaptation.apply(raw))
            if self._float:
                self._check_finite(x, done)
                self._check_range(self.prepared_range(x), "values in the data")
            yield x, self.labels[done:done + len(x)]

    def prepared_range(self, x: np.ndarray) -> tuple[float, float]:
        """The least and greatest value of the batch ``x`` (from ``feeds``) once preprocessed, exactly."""
        p = self.preprocessing
        shaped = [v for v in (p.mean, p.std) if v is not None and v.ndim == x.ndim]
        kept = {a for v in shaped for a, n in enumerate(v.shape) if n > 1}  # mean/std's channel axis
        if not kept:
            return p.extremes(x.min(), x.max())
        axes = tuple(a for a in range(x.ndim) if a not in kept)  # per channel: its own extremes
        return p.extremes(x.min(axis=axes, keepdims=True), x.max(axis=axes, keepdims=True))

    def take(self, positions: np.ndarray) -> np.ndarray:
        """The prepared inputs at ``positions`` (within the selection, ascending), in one streamed pass."""
        positions = np.asarray(positions, np.int64)
        rows, start = [], 0
        for x, _ in self.batches():
            inside = positions[(positions >= start) & (positions < start + len(x))]
            rows.append(x[inside - start])
            start += len(x)
            if len(positions) and start > positions[-1]:
                break
        return np.concatenate(rows) if rows else np.zeros((0,), np.float32)

    def _blocks(self) -> Iterator[tuple[np.ndarray, int]]:
        """``(samples, done)``: consecutive blocks of ``batch_size`` selected samples as read (views of the
        source's chunks where the selection takes them whole) and the selection position of the first."""
        size = self.options.batch_size
        wanted = np.zeros(len(self.source), bool)
        wanted[self.indices] = True
        first = int(self.indices[0]) if len(self.indices) else 0
        last = int(self.indices[-1]) if len(self.indices) else -1
        pending: list[np.ndarray] = []
        held, done = 0, 0
        start = first
        for chunk in self.source.chunks(size, first):
            mask = wanted[start:start + len(chunk)]
            picked = chunk if mask.all() else chunk[mask]
            start += len(chunk)
            if len(picked):
                pending.append(picked)
                held += len(picked)
            while held >= size or (held and start > last):
                block = np.concatenate(pending) if len(pending) > 1 else pending[0]
                take, rest = block[:size], block[size:]
                pending, held = ([rest], len(rest)) if len(rest) else ([], 0)
                yield take, done
                done += len(take)
            if start > last:
                return

    def _prepare(self, raw: np.ndarray, offset: int) -> np.ndarray:
        x = self.preprocessing.apply(self.adaptation.apply(raw))
        if self._float:
            self._check_finite(x, offset)
        return np.ascontiguousarray(x)

    def _check_finite(self, x: np.ndarray, offset: int) -> None:
        if not np.isfinite(x).all():
            bad = int(np.flatnonzero(~np.isfinite(x.reshape(len(x), -1)).all(axis=1))[0])
            raise OnnxFaultError(f"data sample {int(self.indices[offset + bad])} contains NaN or infinite values; "
                                 "clean the data first")

    def _check_range(self, extremes: tuple[float, float], what: str) -> None:
        if not all(np.isfinite(extremes)):
            fix = ("check --mean/--std (a tiny --std overflows)" if self.preprocessing.mean is not None
                   else "rescale the data")
            raise OnnxFaultError(f"preprocessing takes {what} beyond float32's range (to {extremes[0]:g} … "
                                 f"{extremes[1]:g}); {fix}")


def _select(labels: np.ndarray, options: DataOptions) -> np.ndarray:
    indices = np.arange(len(labels))
    if options.classes is not None:
        classes = np.asarray(list(options.classes), np.int64)
        indices = indices[np.isin(labels, classes)]
        if not len(indices):
            listed = ",".join(str(c) for c in classes)
            raise OnnxFaultError(f"no samples with class {listed} in the data; choose classes that occur")
    if options.limit is not None:
        if options.limit < 1:
            raise OnnxFaultError(f"--limit must be at least 1 (got {options.limit})")
        indices = indices[: options.limit]
    if not len(indices):
        raise OnnxFaultError("the data set is empty; give a file with samples")
    return indices


def _normalizer(options: DataOptions, shape: tuple[int, ...], axis: int | None):
    """Per-channel mean/std arrays that broadcast over a batch (applied after scaling to [0,1])."""
    if options.mean is None and options.std is None:
        return None, None
    mean = np.asarray(options.mean if options.mean is not None else [0.0], np.float32)
    std = np.asarray(options.std if options.std is not None else [1.0], np.float32)
    if np.any(std == 0):
        raise OnnxFaultError("--std must not contain 0")
    channels = max(len(mean), len(std))
    if channels > 1 and axis is None:
        raise OnnxFaultError("--mean/--std give several channels but the model input has no channel axis; "
                             "give one value each")
    if channels > 1 and (shape[axis] != channels or min(len(mean), len(std)) not in (1, channels)):
        raise OnnxFaultError(f"--mean/--std give {channels} values but the model input has {shape[axis]} "
                             "channels; give one value per channel (or a single value)")
    view = [1] * len(shape)
    if axis is not None and channels > 1:
        view[axis] = -1
    return (mean.reshape(view) if mean.size > 1 else mean), (std.reshape(view) if std.size > 1 else std)


def open_dataset(path: str | Path, model_shape: tuple[int | None, ...], options: DataOptions | None = None) -> Dataset:
    """Open ``path`` and fit it to a model input of per-sample shape ``model_shape``."""
    options = options or DataOptions()
    return Dataset(open_source(path, options.labels), tuple(model_shape), options, str(path))
