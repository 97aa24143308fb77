"""Data held in memory: a pair ``(x, y)`` of arrays, or an iterable of ``(x, y)`` batches, read as numpy.

Framework objects are recognised by their type's module, never by importing the framework: torch tensors
become numpy through ``.detach().cpu().numpy()`` (a view of a CPU tensor, no copy), TensorFlow tensors
through ``.numpy()``, and a ``tf.data.Dataset`` is read through ``.as_numpy_iterator()``.
"""
from __future__ import annotations

import os
from collections.abc import Iterator as IteratorType
from typing import Any, Iterable, Iterator

import numpy as np

from ..errors import OnnxFaultError
from .source import Source, as_labels, guess_layout

FORMS = ("a path, a Dataset, a pair (x, y) of numpy arrays or torch tensors (x may be a dict of them, one per "
         "model input), an iterable of (x, y) batches or of dicts with their labels under 'labels', 'label' or "
         "'y' (a list, a torch DataLoader, a tf.data.Dataset), or a Hugging Face datasets.Dataset")
LABEL_KEYS = ("labels", "label", "y")  # where a dict batch (a Hugging Face DataLoader's) keeps its labels


def data_error(cause: str) -> OnnxFaultError:
    """The one error for data in a form onnxfault cannot read: names the argument, the cause, the forms."""
    return OnnxFaultError(f"data: {cause}; data takes {FORMS}")


def _framework(value: Any) -> str:
    """The top-level package that defines ``value``'s type (``torch``, ``tensorflow``, ``numpy``, …)."""
    return type(value).__module__.partition(".")[0]


def is_tensor(value: Any) -> bool:
    """A numpy array, a torch tensor or a TensorFlow tensor (checked without importing either framework)."""
    if isinstance(value, np.ndarray):
        return True
    framework = _framework(value)
    return (framework == "torch" and hasattr(value, "detach")) or (
        framework == "tensorflow" and hasattr(value, "numpy") and hasattr(value, "shape"))


def is_path(data: Any) -> bool:
    return isinstance(data, (str, os.PathLike))


def is_inputs(value: Any) -> bool:
    """A dict of arrays or tensors, one per model input (``{"input_ids": ids, "attention_mask": mask}``)."""
    return isinstance(value, dict) and bool(value) and all(isinstance(k, str) and is_tensor(v) for k, v in value.items())


def is_pair(data: Any) -> bool:
    """``(x, y)``: a tuple or list of two arrays or tensors (``x`` may be a dict of them, one per input)."""
    return (isinstance(data, (tuple, list)) and len(data) == 2 and is_tensor(data[1])
            and (is_tensor(data[0]) or is_inputs(data[0])))


def is_hf_dataset(data: Any) -> bool:
    """A Hugging Face ``datasets.Dataset`` (recognised without importing ``datasets``)."""
    return _framework(data) == "datasets" and hasattr(data, "column_names") and hasattr(data, "with_format")


class HFBatches:
    """A Hugging Face ``datasets.Dataset`` as an iterable of dict batches (numpy), read again on every pass: its
    numeric columns (the model's inputs and the labels, under ``labels``, ``label`` or ``y``); columns of text or
    other objects (the raw text beside its token ids) are left out, as they can feed no input."""

    def __init__(self, dataset: Any, batch_size: int):
        features = getattr(dataset, "features", {}) or {}
        self.columns = [c for c in dataset.column_names if _numeric(features.get(c))]
        if not self.columns:
            raise data_error(f"the datasets.Dataset has no numeric columns (columns: {dataset.column_names})")
        self.dataset, self.batch_size = dataset, batch_size

    def __iter__(self):
        table = self.dataset.select_columns(self.columns).with_format("numpy")
        return iter(table.iter(batch_size=self.batch_size))


def _numeric(feature: Any) -> bool:
    """A ``datasets`` feature of numbers or bools (a Value, ClassLabel or a nested Sequence/List of them)."""
    while feature is not None and hasattr(feature, "feature"):  # Sequence / List
        feature = feature.feature
    dtype = str(getattr(feature, "dtype", ""))
    return type(feature).__name__ == "ClassLabel" or dtype.startswith(("int", "uint", "float", "bool"))


def is_batches(data: Any) -> bool:
    """An iterable that is not itself an array, a mapping or text: read as ``(x, y)`` batches."""
    return (hasattr(type(data), "__iter__") and not is_tensor(data)
            and not isinstance(data, (str, bytes, bytearray, dict, os.PathLike)))


def to_numpy(value: Any, name: str) -> np.ndarray:
    """``value`` (``x`` or ``y``) as a numpy array, without copying a CPU tensor."""
    if isinstance(value, np.ndarray):
        return value
    if not is_tensor(value):
        raise data_error(f"{name} is a {type(value).__name__}, not an array or tensor")
    try:
        if _framework(value) == "torch":
            return value.detach().cpu().numpy()
        return value.numpy()
    except (TypeError, RuntimeError, ValueError) as err:  # e.g. bfloat16, which numpy lacks
        raise data_error(f"{name} ({type(value).__name__}) has no numpy form ({str(err).splitlines()[0]}); "
                         "convert it to float32 or uint8") from None


def checked_pair(x: Any, y: Any, where: str = "") -> tuple[np.ndarray, np.ndarray]:
    """``x`` as numbers in native byte order, one sample per row (a view where possible) and ``y`` as int64
    labels, as many as samples. ``where`` names a batch in errors."""
    if is_inputs(x):
        x = input_records(x, where)
        return x, _labels(y, len(x), where)
    x = _samples(to_numpy(x, f"x{where}"), f"x{where}")
    return x.astype(x.dtype.newbyteorder("="), copy=False), _labels(y, len(x), where)


def input_records(arrays: dict, where: str = "") -> np.ndarray:
    """A dict of arrays or tensors, one per model input and one row per sample, as records (a field each, in
    name order, as an .npz's members are read)."""
    from ..runtime import records

    checked = {}
    for name in sorted(arrays):
        value = to_numpy(arrays[name], f"x{where}['{name}']")
        if value.dtype.kind not in "uifb" or value.ndim < 1:
            raise data_error(f"x{where}['{name}'] has type {value.dtype} and shape {value.shape}; expected numbers "
                             "or bools, one row per sample")
        checked[name] = value.astype(value.dtype.newbyteorder("="), copy=False)
    counts = {name: len(v) for name, v in checked.items()}
    if len(set(counts.values())) > 1:
        raise data_error(f"the arrays of x{where} hold different numbers of samples ({counts}); they must match")
    return records(checked)


def _samples(x: np.ndarray, name: str) -> np.ndarray:
    if x.dtype.kind not in "uif" or x.ndim < 2:
        raise data_error(f"{name} has type {x.dtype} and shape {x.shape}; expected numbers, one sample per row")
    if not np.prod(x.shape[1:]):
        raise data_error(f"{name} has shape {x.shape}: its samples hold no numbers")
    return x


def _labels(y: Any, count: int, where: str) -> np.ndarray:
    y = to_numpy(y, f"y{where}")
    try:
        labels = as_labels(y, f"y{where}")
    except OnnxFaultError as err:
        raise data_error(str(err)) from None
    if len(labels) != count:
        raise data_error(f"x{where} holds {count} samples but y{where} {len(labels)} labels; they must match")
    return labels


def _on_device(value: Any) -> bool:
    """A torch tensor outside the CPU's memory (e.g. on a GPU)."""
    return _framework(value) == "torch" and getattr(getattr(value, "device", None), "type", "cpu") != "cpu"


def array_source(x: Any, y: Any) -> Source:
    """A :class:`Source` over ``x`` and ``y`` in memory, never copied whole: its chunks are views of a numpy
    array or a CPU tensor (shared, not copied); a tensor on a GPU is copied to the CPU one chunk at a time."""
    if _on_device(x):
        head = _samples(to_numpy(x[:1], "x"), "x")

        def rows(start: int, stop: int) -> np.ndarray:
            return to_numpy(x[start:stop], "x")
    else:  # a dict of arrays (one per model input) becomes records, once
        head = x = input_records(x) if is_inputs(x) else _samples(to_numpy(x, "x"), "x")

        def rows(start: int, stop: int) -> np.ndarray:
            return x[start:stop]
    count, shape, native = len(x), tuple(head.shape[1:]), head.dtype.newbyteorder("=")
    labels = _labels(y, count, "")
    layout = None if native.names else guess_layout(shape)

    def chunks(size: int, first: int = 0) -> Iterator[np.ndarray]:
        for start in range(first, count, size):
            yield rows(start, start + size).astype(native, copy=False)

    what = ", ".join(native.names) if native.names else f"{shape} {native}"
    return Source(f"arrays of {count} samples {what}", labels, shape, layout, native, chunks)


class BatchStream:
    """An iterable of ``(x, y)`` batches read as checked numpy batches (:func:`checked_pair`), once per
    :meth:`read`. Its first batch is read when the stream is made, for ``sample_shape``, ``layout`` and
    ``dtype``, and is the start of the first pass. An iterable that can be iterated again (a list, a torch
    DataLoader, a ``tf.data.Dataset``) can be read again; an iterator (a generator, ``iter(loader)``) only once,
    and a second :meth:`read` is an error saying so."""

    sample_rate = None  # as a Source's: batches in memory carry no sound's rate

    def __init__(self, batches: Iterable):
        if not is_batches(batches):
            raise data_error(f"got an object of type {type(batches).__name__}")
        self._iterable = batches
        self.one_shot = isinstance(batches, IteratorType)
        iterator = self._iterate()
        first = next(iterator, None)
        if first is None:
            raise data_error(f"the {type(batches).__name__} holds no batches")
        x, y = self._check(first, 1)
        self.sample_shape: tuple[int, ...] = tuple(x.shape[1:])
        self.dtype: np.dtype = x.dtype
        self.layout = None if self.dtype.names else guess_layout(self.sample_shape)
        self.description = f"{type(batches).__name__} of batches of samples {self.sample_shape} {self.dtype}"
        self._pending: tuple[tuple[np.ndarray, np.ndarray], Iterator] | None = ((x, y), iterator)
        self._seen: list[np.ndarray] = []  # the labels every pass has read so far, in order: all passes must agree

    def read(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """One pass over the batches: ``(x, y)`` with x as numbers in native order and y int64 labels. Every pass
        must read the labels the earlier ones read, in the same order (a shuffling loader is an error), whichever
        data set (selection) reads it."""
        offset = 0
        for x, y in self._batches():
            offset = self._same_as_before(y, offset)
            yield x, y

    def _same_as_before(self, y: np.ndarray, offset: int) -> int:
        """Compare the labels ``y`` read from ``offset`` with those an earlier pass read there (and keep the ones
        no pass has read yet); returns the next offset."""
        known = sum(len(part) for part in self._seen)
        if offset < known:
            before = np.concatenate(self._seen)[offset:offset + len(y)]
            if not np.array_equal(before, y[:len(before)]):
                raise data_error("a second pass over the batches read other samples than the first (is the "
                                 "iterable shuffled?); turn shuffling off")
        if offset + len(y) > known:
            self._seen.append(y[known - offset:].copy())
        return offset + len(y)

    def _batches(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        start = 1
        if self._pending is not None:
            (x, y), iterator = self._pending
            self._pending, start = None, 2
            yield x, y
        elif self.one_shot:
            raise data_error(f"an iterator ({type(self._iterable).__name__}) of batches is read once and was read "
                             "already, but this needs a second pass; pass what it iterates instead")
        else:
            iterator = self._iterate()
        for number, batch in enumerate(iterator, start):
            x, y = self._check(batch, number)
            if x.shape[1:] != self.sample_shape or x.dtype != self.dtype:
                raise data_error(f"batch {number} holds samples of shape {x.shape[1:]} and type {x.dtype}, but "
                                 f"batch 1 of shape {self.sample_shape} and type {self.dtype}; every batch must "
                                 "match")
            yield x, y

    def _iterate(self) -> Iterator:
        if _framework(self._iterable) == "tensorflow" and hasattr(self._iterable, "as_numpy_iterator"):
            return self._iterable.as_numpy_iterator()
        return iter(self._iterable)

    @staticmethod
    def _check(batch: Any, number: int) -> tuple[np.ndarray, np.ndarray]:
        if isinstance(batch, dict):  # a Hugging Face-style batch: the inputs and their labels in one dict
            key = next((k for k in LABEL_KEYS if k in batch), None)
            if key is None:
                raise data_error(f"batch {number} is a dict with keys {sorted(batch)} but no labels (under "
                                 f"{', '.join(repr(k) for k in LABEL_KEYS)})")
            inputs = {k: v for k, v in batch.items() if k != key}
            if not is_inputs(inputs):
                raise data_error(f"batch {number} holds values under {sorted(inputs)} that are not arrays or tensors")
            return checked_pair(inputs, batch[key], where=f" of batch {number}")
        if not isinstance(batch, (tuple, list)) or len(batch) != 2:
            raise data_error(f"batch {number} is a {type(batch).__name__}, not a pair (x, y)")
        return checked_pair(*batch, where=f" of batch {number}")
