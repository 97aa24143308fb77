"""Labelled data: readers (IDX, npz, CIFAR batches, image folders), layout fitting, streaming batches."""
from .dataset import DEFAULT_BATCH_SIZE, DataOptions, Dataset, open_dataset, open_source
from .source import Source

__all__ = ["DEFAULT_BATCH_SIZE", "DataOptions", "Dataset", "Source", "open_dataset", "open_source"]
