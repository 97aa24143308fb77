"""Data in any form a function takes (a path, a Dataset, arrays ``(x, y)``, an iterable of batches) as a
:class:`~onnxfault.data.dataset.Dataset` fitted to a model's input."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Iterable, Union

from ..errors import OnnxFaultError
from .dataset import Dataset, open_dataset
from .memory import HFBatches, data_error, is_batches, is_hf_dataset, is_pair, is_path
from .options import DataOptions


DataLike = Union[str, Path, Dataset, tuple, Iterable]


def as_data(data: DataLike, options: DataOptions | None = None) -> str | Path | Dataset:
    """A path or a :class:`Dataset` as given; a pair ``(x, y)``, an iterable of batches or a Hugging Face
    ``datasets.Dataset`` (its numeric columns, see :class:`~onnxfault.data.memory.HFBatches`) as a Dataset not
    yet fitted to a model (an iterable's first batch is read now). Anything else is an error naming the forms."""
    if is_path(data) or isinstance(data, Dataset):
        return data
    if is_pair(data):
        return Dataset.from_arrays(*data, options=options)
    if is_hf_dataset(data):
        return Dataset.from_batches(HFBatches(data, (options or DataOptions()).batch_size), options)
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
    if options is not None and options.class_names is not None:
        raise OnnxFaultError("`class_names` orders the class folders of data at a path; data in memory has its "
                             "labels already: leave it out")
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
