"""Labelled data: readers (IDX, npz, CIFAR batches, image folders), arrays and iterables of batches in memory,
layout fitting, streaming batches."""
from .dataset import Dataset, StreamedDataset, open_dataset
from .formats import open_source
from .forms import DataLike, as_data, as_dataset
from .options import DEFAULT_BATCH_SIZE, DataOptions
from .source import Source

__all__ = ["DEFAULT_BATCH_SIZE", "DataLike", "DataOptions", "Dataset", "Source", "StreamedDataset", "as_data",
           "as_dataset", "open_dataset", "open_source"]
