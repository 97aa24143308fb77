"""Spectra and confusion matrices as sums over shards: each worker opens the data itself (from its path:
samples never pass through the driver), counts the shards it is given with its own session, built once,
and the driver adds the counts. Integer sums: the result is the single-process one exactly."""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np

from ..data import DataOptions, Dataset, open_dataset
from ..errors import OnnxFaultError
from ..model import Model
from .options import RayOptions, ray_runtime, use_gpus, worker_count
from .shards import plan_shards
from .workers import run_pool


@dataclass(frozen=True)
class _Data:
    """What a worker needs to open the driver's selection: absolute paths, the options, the expected size."""

    model: Model
    path: str
    options: DataOptions
    samples: int


@dataclass(frozen=True)
class CountJob:
    """A counter (``prepare(model, dataset)``, ``count(state, dataset, on_batch)``, ``device_of(state)``, and
    optionally ``merge(parts)`` when its shards' results do not simply add up) run on shards; each result is
    the counts and the device that made them."""

    counter: object

    def start(self, shared: _Data):
        dataset = open_dataset(shared.path, shared.model.data_shape, shared.options)
        if len(dataset) != shared.samples:
            raise OnnxFaultError(f"a Ray worker reads {len(dataset)} samples from {shared.path}, the driver "
                                 f"{shared.samples}; every node must see the same data at that path")
        return dataset, self.counter.prepare(shared.model, dataset)

    def run(self, state, item: tuple[int, int], on_batch: Callable[[int], None]):
        dataset, prepared = state
        return self.counter.count(prepared, dataset.shard(*item), on_batch), self.counter.device_of(prepared)


def shared_data(model: Model, dataset: Dataset) -> _Data:
    """The dataset as the workers open it: by absolute path (the same on every node)."""
    path = Path(dataset.path)
    if not path.exists():
        raise OnnxFaultError(f"`ray` reads the data on the workers from its path, but '{dataset.path}' is not a "
                             "file or folder here; give `data` a path that every node can read")
    options = dataset.options
    if options.labels:
        options = replace(options, labels=str(Path(options.labels).absolute()))
    return _Data(model, str(path.absolute()), options, len(dataset))


def counted(counter, model: Model, dataset: Dataset, ray_options: RayOptions | None = None,
            on_batch: Callable[[int], None] | None = None) -> tuple[tuple, str]:
    """``counter.count`` over the whole of ``dataset`` and the device that ran it: in this process, or with
    ``ray_options`` as the sum of its shards' counts on Ray workers (:func:`sum_over_shards`)."""
    if ray_options is None:
        state = counter.prepare(model, dataset)
        return counter.count(state, dataset, on_batch), counter.device_of(state)
    return sum_over_shards(counter, model, dataset, ray_options, on_batch)


def sum_over_shards(counter, model: Model, dataset: Dataset, ray_options: RayOptions,
                    on_batch: Callable[[int], None] | None = None) -> tuple[tuple, str]:
    """``counter.count`` over the whole of ``dataset``, as the sum of its shards' counts on Ray workers,
    and the device the workers ran on. ``on_batch(n)`` gets the samples counted across workers."""
    shared = shared_data(model, dataset)
    with ray_runtime(ray_options) as ray:
        gpus = use_gpus(ray, getattr(counter, "device", "auto"))
        workers = worker_count(ray, ray_options, gpus)
        shards = plan_shards(dataset, workers, shared.path)
        results, _ = run_pool(ray, CountJob(counter), shared, shards, workers, gpus,
                              [stop - start for start, stop in shards], on_batch)
    merge = getattr(counter, "merge", None)  # a counter whose parts do not simply add (minima, maxima)
    parts = [counts for counts, _ in results]
    totals = merge(parts) if merge else tuple(_add([part[i] for part in parts]) for i in range(len(parts[0])))
    return totals, results[0][1]


def _add(parts: list):
    """The sum of integer counts (arrays or ints), in shard order."""
    total = parts[0].copy() if isinstance(parts[0], np.ndarray) else parts[0]
    for part in parts[1:]:
        total = total + part
    return total
