"""A folder of ``.npz`` shards (each with ``x`` and ``y``, as :mod:`.npz` reads them), taken in name order as
one data set: how data split for a cluster is stored. Labels are read from every shard up front; samples
are streamed shard by shard, and a read that starts at sample ``first`` opens the shard that holds it."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import OnnxFaultError
from .npz import open_npz
from .source import MAX_SAMPLES, Source, check_input_path


def shard_files(path: Path) -> list[Path]:
    """The ``*.npz`` files directly in ``path``, in name order."""
    try:
        return sorted(p for p in path.iterdir() if p.suffix == ".npz" and not p.name.startswith("."))
    except OSError as err:
        raise OnnxFaultError(f"cannot list {path}: {err.strerror or err}; check the folder and its permissions") from None


def is_shard_folder(path: Path) -> bool:
    return path.is_dir() and bool(shard_files(path))


def open_shards(path: Path) -> Source:
    """The shards of ``path`` as one source; every shard must hold samples of the same shape and type."""
    files = shard_files(path)
    sources = []
    for file in files:
        check_input_path(file, what="shard")
        sources.append(open_npz(file))
    first = sources[0]
    for file, source in zip(files, sources):
        if (source.sample_shape, source.dtype) != (first.sample_shape, first.dtype):
            raise OnnxFaultError(f"shard {file.name} holds samples of shape {source.sample_shape} ({source.dtype}), "
                                 f"{files[0].name} of shape {first.sample_shape} ({first.dtype}); every shard in "
                                 f"{path} must hold the same kind of samples")
    starts = np.cumsum([0] + [len(s) for s in sources])
    if starts[-1] > MAX_SAMPLES:
        raise OnnxFaultError(f"{path} holds {starts[-1]:,} samples, over onnxfault's limit of {MAX_SAMPLES:,}; "
                             "use fewer shards per run")
    labels = np.concatenate([s.labels for s in sources])

    def chunks(rows: int, first_sample: int = 0) -> Iterator[np.ndarray]:
        shard = int(np.searchsorted(starts, first_sample, side="right") - 1)
        for i in range(max(shard, 0), len(sources)):
            yield from sources[i].chunks(rows, max(first_sample - int(starts[i]), 0))

    return Source(f"{len(files)} npz shards in {path.name}", labels, first.sample_shape, first.layout,
                  first.dtype, chunks)
