"""Opening a data set for a model and streaming it in preprocessed float32 batches."""
from __future__ import annotations

import copy
import stat
import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence, Union

import numpy as np

from ..errors import OnnxFaultError, check_finite
from .cifar import is_pickle, open_cifar
from .folder import is_image_folder, open_folder
from .idx import is_idx, open_idx
from .layout import Adaptation, as_is, channel_axis_of, plan_layout
from .memory import BatchStream, array_source, data_error, is_batches, is_pair, is_path
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
    read for a session that does the preprocessing in its graph (``feeds`` and ``preprocessing``).

    Made from a file (:func:`open_dataset`), from arrays in memory (:meth:`from_arrays`) or from an iterable
    of batches (:meth:`from_batches`). One made without ``model_shape`` takes the samples as they are until a
    function (``evaluate``, ``localize``, ``synthesize``) fits it to its model's input (:meth:`fit`)."""

    read_once = False  # True for an iterable of batches: no labels up front, read batch by batch per pass

    def __init__(self, source: Source, model_shape: tuple[int | None, ...] | None = None,
                 options: DataOptions | None = None, path: str | None = None):
        self.source = source
        self.path = path or source.description
        self.options = options = options or DataOptions()
        self.indices = _select(source.labels, options)
        self.labels = source.labels[self.indices]
        self._fit(model_shape)

    @classmethod
    def from_arrays(cls, x: Any, y: Any, options: DataOptions | None = None) -> "Dataset":
        """Samples ``x`` (one per row) and integer labels ``y`` in memory, as numpy arrays or torch tensors
        (CPU tensors are shared, not copied). Batches are views of ``x``: nothing is copied whole. Fitted to a
        model's input by the function that receives it, exactly as a file with the same samples would be
        (layout, uint8 / 255 unless ``raw``, ``mean``/``std``, ``classes``, ``limit``, ``batch_size``).

        >>> ds = Dataset.from_arrays(x_test, y_test, DataOptions(limit=1000))
        >>> onnxfault.evaluate("model.onnx", ds).accuracy"""
        return cls(array_source(x, y), None, options)

    @classmethod
    def from_batches(cls, batches: Iterable, options: DataOptions | None = None) -> "StreamedDataset":
        """``(x, y)`` batches from an iterable (a list, a torch ``DataLoader``, a ``tf.data.Dataset``, a
        generator), read batch by batch and never held whole; see :class:`StreamedDataset` for what reading
        an iterable once means. Its first batch is read now (for the samples' shape and type).

        >>> loader = torch.utils.data.DataLoader(test_set, batch_size=256, shuffle=False)
        >>> onnxfault.localize("model.onnx", Dataset.from_batches(loader))"""
        return StreamedDataset(BatchStream(batches), None, options)

    def fit(self, model_shape: tuple[int | None, ...], options: DataOptions | None = None,
            num_classes: int | None = None) -> "Dataset":
        """The same samples fitted to a model input of per-sample shape ``model_shape``, with ``options``
        (default: this data set's); ``num_classes`` bounds the labels of a stream (checked per batch)."""
        return Dataset(self.source, model_shape, options or self.options, self.path)

    def _fit(self, model_shape: tuple[int | None, ...] | None) -> None:
        """Layout, scaling and checks for a model input of per-sample shape ``model_shape`` (None: as read)."""
        source, options = self.source, self.options
        self.model_shape = None if model_shape is None else tuple(model_shape)
        self.adaptation: Adaptation = (as_is(source.layout) if model_shape is None else
                                       plan_layout(source.sample_shape, source.layout, self.model_shape,
                                                   options.layout))
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
        indices = indices[np.isin(labels, _classes(options))]
        if not len(indices):
            raise _nothing_selected(options)
    _check_limit(options)
    if options.limit is not None:
        indices = indices[: options.limit]
    if not len(indices):
        raise _nothing_selected(options)
    return indices


def _classes(options: DataOptions) -> np.ndarray | None:
    return None if options.classes is None else np.asarray(list(options.classes), np.int64)


def _check_limit(options: DataOptions) -> None:
    if options.limit is not None and options.limit < 1:
        raise OnnxFaultError(f"--limit must be at least 1 (got {options.limit})")


def _nothing_selected(options: DataOptions) -> OnnxFaultError:
    if options.classes is not None:
        listed = ",".join(str(c) for c in _classes(options))
        return OnnxFaultError(f"no samples with class {listed} in the data; choose classes that occur")
    return OnnxFaultError("the data set is empty; give a file with samples")


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


class StreamedDataset(Dataset):
    """A data set over an iterable of ``(x, y)`` batches, read once per pass, batch by batch, never whole:
    ``classes`` and ``limit`` select within each batch as it comes (its labels are not known up front; the
    pass stops once ``limit`` samples are selected), the selected samples are regrouped into batches of
    ``batch_size``, and labels are checked per batch (integers; below ``num_classes`` when given).
    ``labels`` and ``indices`` hold what the first pass has read so far; once it is complete they hold every
    selected sample and ``len`` is known. A method that needs a second pass (``take``; a neuron-guided
    ``synthesize`` counts the spectrum, then predicts the seeds) reads the iterable again: a list, a
    DataLoader or a ``tf.data.Dataset`` can be, an iterator (a generator) cannot, and says so; a second pass
    over the same data set must read the same samples (a shuffling iterable is an error)."""

    read_once = True

    def __init__(self, stream: BatchStream, model_shape: tuple[int | None, ...] | None = None,
                 options: DataOptions | None = None, path: str | None = None, num_classes: int | None = None):
        self.source = stream
        self.path = path or stream.description
        self.options = options or DataOptions()
        self.num_classes = num_classes
        self._labels, self._indices = _Growing(), _Growing()
        self._length: int | None = None
        _check_limit(self.options)
        self._fit(model_shape)

    def fit(self, model_shape: tuple[int | None, ...], options: DataOptions | None = None,
            num_classes: int | None = None) -> "StreamedDataset":
        return StreamedDataset(self.source, model_shape, options or self.options, self.path,
                               self.num_classes if num_classes is None else num_classes)

    @property
    def labels(self) -> np.ndarray:
        return self._labels.values

    @property
    def indices(self) -> np.ndarray:
        return self._indices.values

    def __len__(self) -> int:
        if self._length is None:
            raise OnnxFaultError(f"the number of samples in {self.path} is known only once a pass has read them "
                                 "(an iterable of batches has no length up front); give arrays (x, y) or a path")
        return self._length

    def __bool__(self) -> bool:
        return True

    def shard(self, start: int, stop: int) -> "Dataset":
        raise OnnxFaultError("an iterable of batches cannot be split into shards; give a path (or arrays)")

    def _blocks(self) -> Iterator[tuple[np.ndarray, int]]:
        """As :meth:`Dataset._blocks`. The first complete pass records the labels and indices; a later pass
        (e.g. ``take``) must read the same samples (its labels are compared: a shuffled iterable is an error)."""
        size, limit, classes = self.options.batch_size, self.options.limit, _classes(self.options)
        recorded = self._length is not None
        if not recorded:
            self._labels.clear()
            self._indices.clear()
        pending: list[np.ndarray] = []
        held = done = seen = 0
        for x, y in self.source.read():
            keep = np.arange(len(y)) if classes is None else np.flatnonzero(np.isin(y, classes))
            if limit is not None:
                keep = keep[:limit - done - held]
            if len(keep):
                self._record(y[keep], keep + seen, done + held, recorded)
                pending.append(x if len(keep) == len(x) else x[keep])
                held += len(keep)
            seen += len(x)
            while held >= size:
                block = np.concatenate(pending) if len(pending) > 1 else pending[0]
                pending, held = ([block[size:]], held - size) if held > size else ([], 0)
                yield block[:size], done
                done += size
            # what waits for the next batch is copied: an iterable may refill one buffer for every batch
            pending = [p.copy() if np.may_share_memory(p, x) else p for p in pending]
            if limit is not None and done + held >= limit:
                break
        if held:
            yield (np.concatenate(pending) if len(pending) > 1 else pending[0]), done
            done += held
        if not done:
            raise _nothing_selected(self.options)
        if recorded and done != self._length:
            raise _another_pass()
        self._length = done

    def _record(self, labels: np.ndarray, indices: np.ndarray, at: int, recorded: bool) -> None:
        """Keep (first pass) or compare (later passes) the labels and indices of selected samples from ``at``."""
        if recorded:
            if not (np.array_equal(labels, self.labels[at:at + len(labels)])
                    and np.array_equal(indices, self.indices[at:at + len(indices)])):
                raise _another_pass()
            return
        self._check_bound(labels)
        self._labels.extend(labels)
        self._indices.extend(indices)

    def _check_bound(self, labels: np.ndarray) -> None:
        if self.num_classes is not None and labels.max() >= self.num_classes:
            raise OnnxFaultError(f"the data has label {int(labels.max())} but the model has only {self.num_classes} "
                                 f"classes (0..{self.num_classes - 1}); check the data or the model")


def _another_pass() -> OnnxFaultError:
    return data_error("a second pass over the batches read other samples than the first (is the iterable "
                      "shuffled?); turn shuffling off")


class _Growing:
    """An int64 array grown block by block (its buffer doubles); ``values`` is a view of what it holds."""

    def __init__(self):
        self._buffer = np.empty(1024, np.int64)
        self._size = 0

    def clear(self) -> None:
        self._size = 0

    def extend(self, values: np.ndarray) -> None:
        end = self._size + len(values)
        if end > len(self._buffer):
            grown = np.empty(max(end, 2 * len(self._buffer)), np.int64)
            grown[:self._size] = self._buffer[:self._size]
            self._buffer = grown
        self._buffer[self._size:end] = values
        self._size = end

    @property
    def values(self) -> np.ndarray:
        return self._buffer[:self._size]


DataLike = Union[str, Path, Dataset, tuple, Iterable]


def as_data(data: DataLike, options: DataOptions | None = None) -> str | Path | Dataset:
    """A path or a :class:`Dataset` as given; a pair ``(x, y)`` or an iterable of batches as a Dataset not yet
    fitted to a model (an iterable's first batch is read now). Anything else is an error naming the forms."""
    if is_path(data) or isinstance(data, Dataset):
        return data
    if is_pair(data):
        return Dataset.from_arrays(*data, options=options)
    if is_batches(data):
        return Dataset.from_batches(data, options)
    raise data_error(f"got an object of type {type(data).__name__}")


def as_dataset(data: DataLike, model_shape: tuple[int | None, ...], options: DataOptions | None = None, *,
               cls: int | None = None, num_classes: int | None = None) -> Dataset:
    """``data`` in any form fitted to a model input of per-sample shape ``model_shape``, with the same layout
    fitting, scaling and ``options`` for every form: a path (opened with ``options``); a pair ``(x, y)`` of
    numpy arrays or torch tensors; an iterable of ``(x, y)`` batches (:class:`StreamedDataset`); a
    :class:`Dataset`: one fitted to a model is used as given, one not yet fitted is fitted here with its own
    options (or ``options``, when its own are the defaults). ``cls`` keeps only the samples of that class
    (except in a fitted Dataset); ``num_classes`` bounds a stream's labels (checked per batch)."""
    if is_path(data):
        return open_dataset(data, model_shape, _only(options or DataOptions(), cls))
    data = as_data(data, options)
    if data.model_shape is not None:
        return data.fit(data.model_shape, data.options, num_classes) if data.read_once else data
    return data.fit(model_shape, _only(_options_for(data, options), cls), num_classes)


def _only(options: DataOptions, cls: int | None) -> DataOptions:
    return options if cls is None else replace(options, classes=[cls])


def _options_for(dataset: Dataset, options: DataOptions | None) -> DataOptions:
    if options is None or options == dataset.options:
        return dataset.options
    if dataset.options == DataOptions():
        return options
    raise OnnxFaultError("data_options: the Dataset was made with other options; give the options once "
                         "(Dataset.from_arrays(x, y, options) or data_options=)")
