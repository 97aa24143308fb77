"""Labelled data: readers (IDX, npz, CIFAR batches, image folders), arrays and iterables of batches in memory,
layout fitting, streaming batches."""
from .dataset import (DEFAULT_BATCH_SIZE, DataLike, DataOptions, Dataset, StreamedDataset, as_data, as_dataset,
                      open_dataset, open_source)
from .source import Source

__all__ = ["DEFAULT_BATCH_SIZE", "DataLike", "DataOptions", "Dataset", "Source", "StreamedDataset", "as_data",
           "as_dataset", "open_dataset", "open_source"]
