"""Cutting a data set's selection into shards for the workers: contiguous ranges aligned to the batch size,
so every shard's batches are the single-process run's batches."""
from __future__ import annotations

import zipfile
from pathlib import Path

from ..data import Dataset

SHARDS_PER_WORKER = 8  # enough to balance uneven workers and to show progress
MIN_SHARD_BATCHES = 4  # below this a shard's start-up (opening, first batch) dominates


def seekable(path: str | Path) -> bool:
    """Whether a reader can start a shard at its first sample without reading the samples before it: not
    a gzip file (IDX .gz) nor an .npz whose ``x`` is deflated (numpy.savez_compressed), which are read
    from their start."""
    path = Path(path)
    if path.is_dir():
        return True  # image folders and folders of .npz shards open the file holding the first sample
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head[:2] == b"\x1f\x8b":
        return False
    if head[:2] == b"PK":
        try:
            with zipfile.ZipFile(path) as archive:
                return all(info.compress_type == zipfile.ZIP_STORED for info in archive.infolist()
                           if Path(info.filename).stem == "x")
        except (OSError, zipfile.BadZipFile):
            return False
    return True


def plan_shards(dataset: Dataset, workers: int, path: str | Path | None = None) -> list[tuple[int, int]]:
    """``(start, stop)`` selection positions covering ``dataset`` in order, each a whole number of batches
    (the last may be shorter). A source that cannot seek gets one shard per worker, so it is read at most
    ``workers`` times (each shard reads past the samples before it); others get ``SHARDS_PER_WORKER`` per
    worker, of at least ``MIN_SHARD_BATCHES`` batches."""
    batch, total = dataset.options.batch_size, len(dataset)
    batches = -(-total // batch)
    if seekable(path or dataset.path):
        per_shard = max(-(-batches // (workers * SHARDS_PER_WORKER)), MIN_SHARD_BATCHES)
    else:
        per_shard = -(-batches // workers)
    size = per_shard * batch
    return [(start, min(start + size, total)) for start in range(0, total, size)]
