"""A data set fitted to one model input, streamed in batches: from a file, arrays, or an iterable of batches."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from ..errors import OnnxFaultError
from .formats import open_source
from .layout import Adaptation, as_is, channel_axis_of, plan_fields, plan_layout
from .memory import BatchStream, array_source, data_error
from .options import DataOptions, check_limit, nothing_selected, select, selected_classes
from .preprocessing import Preprocessing, normalizer
from .source import Source
from .text import TextSource


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
        self.indices = select(source.labels, options)
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

    def _fit(self, model_shape) -> None:
        """Layout, scaling and checks for a model input of per-sample shape ``model_shape`` (None: as read), or
        for a model's inputs (``Model.data_shape``: :class:`~onnxfault.model.ModelInput` specs)."""
        source, options = self.source, self.options
        self.model_shape = None if model_shape is None else tuple(model_shape)
        inputs = self.model_shape if self.model_shape and not isinstance(self.model_shape[0], (int, type(None))) \
            else None
        self.vocabulary: dict[str | None, tuple[str, int]] = {}  # field (None: the array) → (input, embedding rows)
        if isinstance(source, TextSource) and model_shape is not None:  # texts become the model's token records
            if inputs is None:
                raise OnnxFaultError("texts need a model that takes token ids; this model takes one float input")
            self.source = source = source.tokenized(inputs)
        self._float = np.dtype(source.dtype).kind == "f"
        self._as_read = bool(source.dtype.names) or (inputs is not None and not inputs[0].is_float)
        if source.dtype.names and inputs is None and model_shape is not None:
            raise OnnxFaultError(f"{self.path} holds arrays {', '.join(source.dtype.names)} and labels but no 'x' (in "
                                 "Parquet: 'x' or 'image'); the model takes one float input: store its samples as "
                                 "'x' (one array per input is for models with several inputs or token ids)")
        if source.dtype.names or inputs is not None:
            self._fit_inputs(inputs)
            return
        self.adaptation: Adaptation = (as_is(source.layout) if model_shape is None else
                                       plan_layout(source.sample_shape, source.layout, self.model_shape,
                                                   options.layout))
        self.divisor = 1.0 if options.raw or source.dtype != np.uint8 else 255.0
        out_shape = self.adaptation.apply(np.zeros((1, *source.sample_shape))).shape
        mean, std = normalizer(options, out_shape, channel_axis_of(self.adaptation.model_layout, len(out_shape)))
        self.preprocessing = Preprocessing(np.dtype(source.dtype), self.divisor, mean, std)
        if not self._float:  # integers are finite: only mean/std can overflow, and the type bounds its values
            info = np.iinfo(source.dtype)
            self._check_range(self.preprocessing.extremes(info.min, info.max), "values of its type")
        if options.batch_size < 1:
            raise OnnxFaultError(f"`batch_size` must be at least 1 (got {options.batch_size})")

    def _fit_inputs(self, inputs) -> None:
        """:meth:`_fit` for records (a field per input) or for a model whose one input takes integers: the
        samples are fed as read (cast to each input's type; uint8 fields of float inputs / 255), never through
        ``--mean/--std``; token ids are checked against the embedding's rows per batch."""
        source, options = self.source, self.options
        if options.mean is not None or options.std is not None:
            raise OnnxFaultError("`mean`/`std` scale one image input; this data feeds "
                                 + ("several inputs" if source.dtype.names else "an integer input") + " as it is")
        if inputs is None:  # records not yet fitted to a model
            self.adaptation = as_is(None)
        elif source.dtype.names:
            self.adaptation = plan_fields(source.dtype, inputs, options.raw)
            self.vocabulary = {i.name: (i.name, i.vocabulary) for i in inputs if i.vocabulary}
        elif len(inputs) == 1:
            self.adaptation = plan_layout(source.sample_shape, source.layout, inputs[0].shape, options.layout)
            if source.dtype.kind not in "iub":
                raise OnnxFaultError(f"the data holds {source.dtype} samples, but model input '{inputs[0].name}' "
                                     f"takes {inputs[0].dtype} (integers); give whole numbers")
            if inputs[0].vocabulary:
                self.vocabulary = {None: (inputs[0].name, inputs[0].vocabulary)}
        else:
            names = ", ".join(i.name for i in inputs)
            raise OnnxFaultError(f"the model has {len(inputs)} inputs ({names}) but the data holds one array of "
                                 f"samples; give one array per input (npz members {names} and y)")
        self.divisor = 1.0
        self.preprocessing = Preprocessing(np.dtype(np.float32))
        if options.batch_size < 1:
            raise OnnxFaultError(f"`batch_size` must be at least 1 (got {options.batch_size})")

    def _check_as_read(self, x: np.ndarray, offset: int) -> None:
        """Float fields finite; token ids within their embedding's rows (as onnxruntime's Gather would refuse)."""
        for field in (x.dtype.names or [None]):
            values = x if field is None else x[field]
            if values.dtype.kind == "f":
                self._check_finite(values, offset)
            if field in self.vocabulary:
                name, rows = self.vocabulary[field]
                bad = (values < 0) | (values >= rows)
                if bad.any():
                    sample = int(np.flatnonzero(bad.reshape(len(values), -1).any(axis=1))[0])
                    value = int(values[sample][bad[sample]].flat[0])
                    raise OnnxFaultError(f"data sample {int(self.indices[offset + sample])} has {name} {value}, outside "
                                         f"the model's embedding of {rows} rows (0..{rows - 1}); tokenize with the "
                                         "model's own tokenizer")

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
            if self._as_read:
                self._check_as_read(x, done)
            elif self._float:
                self._check_finite(x, done)
                self._check_range(self.prepared_range(x), "values in the data")
            yield x, self.labels[done:done + len(x)]

    def prepared_range(self, x: np.ndarray) -> tuple[float, float]:
        """The least and greatest value of the batch ``x`` (from ``feeds``) once preprocessed, exactly (for data fed
        as read: over every field)."""
        if self._as_read:
            fields = [x[f] for f in x.dtype.names] if x.dtype.names else [x]
            return float(min(f.min() for f in fields)), float(max(f.max() for f in fields))
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
        return _regroup(self._picked(), self.options.batch_size)

    def _picked(self) -> Iterator[np.ndarray]:
        """The selected samples of each chunk of the source, in order, up to the last selected one."""
        first = int(self.indices[0]) if len(self.indices) else 0
        last = int(self.indices[-1]) if len(self.indices) else -1
        every = len(self.indices) == last - first + 1  # the selection holds every sample from first to last
        if not every:
            wanted = np.zeros(len(self.source), bool)
            wanted[self.indices] = True
        start = first
        for chunk in self.source.chunks(self.options.batch_size, first):
            if every:
                yield chunk[:last + 1 - start]
            else:
                mask = wanted[start:start + len(chunk)]
                yield chunk if mask.all() else chunk[mask]
            start += len(chunk)
            if start > last:
                return

    def _prepare(self, raw: np.ndarray, offset: int) -> np.ndarray:
        if self._as_read:
            x = np.ascontiguousarray(self.adaptation.apply(raw))
            self._check_as_read(x, offset)
            return x
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
            fix = ("check `mean`/`std` (a tiny `std` overflows)" if self.preprocessing.mean is not None
                   else "rescale the data")
            raise OnnxFaultError(f"preprocessing takes {what} beyond float32's range (to {extremes[0]:g} … "
                                 f"{extremes[1]:g}); {fix}")


def open_dataset(path: str | Path, model_shape: tuple[int | None, ...], options: DataOptions | None = None) -> Dataset:
    """Open ``path`` and fit it to a model input of per-sample shape ``model_shape``."""
    options = options or DataOptions()
    source = open_source(path, options.labels, options.sample_rate, options.text_options(), options.class_names)
    return Dataset(source, tuple(model_shape),
                   options, str(path))


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
        check_limit(self.options)
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
        limit, classes = self.options.limit, selected_classes(self.options)
        recorded = self._length is not None
        if not recorded:
            self._labels.clear()
            self._indices.clear()
        selected = 0

        def picked() -> Iterator[np.ndarray]:
            nonlocal selected
            seen = 0
            for x, y in self.source.read():
                keep = np.arange(len(y)) if classes is None else np.flatnonzero(np.isin(y, classes))
                if limit is not None:
                    keep = keep[:limit - selected]
                if len(keep):
                    self._record(y[keep], keep + seen, selected, recorded)
                    selected += len(keep)
                    yield x if len(keep) == len(x) else x[keep]
                seen += len(x)
                if limit is not None and selected >= limit:
                    return

        # what waits for the next batch is copied: an iterable may refill one buffer for every batch
        yield from _regroup(picked(), self.options.batch_size, copy_waiting=True)
        if not selected:
            raise nothing_selected(self.options)
        if recorded and selected != self._length:
            raise _another_pass()
        self._length = selected

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


def _regroup(pieces: Iterator[np.ndarray], size: int, copy_waiting: bool = False
             ) -> Iterator[tuple[np.ndarray, int]]:
    """``(block, done)``: the rows of ``pieces`` regrouped into consecutive blocks of ``size`` rows (the last
    may be shorter; a piece that fills blocks alone gives views of it) and the position of each block's first
    row. ``copy_waiting`` copies the rows left waiting for the next piece when they share its memory."""
    pending: list[np.ndarray] = []
    held = done = 0
    for piece in pieces:
        if len(piece):
            pending.append(piece)
            held += len(piece)
        while held >= size:
            block = np.concatenate(pending) if len(pending) > 1 else pending[0]
            pending, held = ([block[size:]], held - size) if held > size else ([], 0)
            yield block[:size], done
            done += size
        if copy_waiting:
            pending = [p.copy() if np.may_share_memory(p, piece) else p for p in pending]
    if held:
        yield (np.concatenate(pending) if len(pending) > 1 else pending[0]), done


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


