"""CIFAR-10/100 "python version" batches, read WITHOUT running pickle code.

The files are pickles of a dict holding bytes, lists, ints and one uint8 numpy array. The unpickler
below resolves only the numpy names needed to rebuild that array (and ``_codecs.encode`` for bytes); any other global (the way a
malicious pickle runs code) is refused, and so are object arrays.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from ..errors import OnnxFaultError
from .source import Source, as_labels, in_memory

_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),  # how protocol-2 pickles written by Python 3 spell a bytes object
}


class _DataOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refused to load '{module}.{name}'")
        return super().find_class(module, name)


def is_pickle(head: bytes) -> bool:
    return len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5


def _get(batch: dict, *keys: str):
    for key in keys:
        for k in (key, key.encode()):
            if k in batch:
                return batch[k]
    return None


def open_cifar(path: Path) -> Source:
    try:
        with open(path, "rb") as fh:
            batch = _DataOnlyUnpickler(fh, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, KeyError, IndexError,
            OverflowError, RecursionError) as err:  # what a malformed pickle raises
        raise OnnxFaultError(f"{path} is not a CIFAR python batch ({str(err).splitlines()[0] if str(err) else type(err).__name__}); "
                             "only data-only pickles are read") from None
    if not isinstance(batch, dict):
        raise OnnxFaultError(f"{path} is not a CIFAR python batch (no dict inside)")
    data, labels = _get(batch, "data"), _get(batch, "labels", "fine_labels")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise OnnxFaultError(f"{path} has no uint8 'data' array of shape (N, 3072); not a CIFAR batch")
    y = as_labels(labels if labels is not None else [], str(path))
    if len(y) != len(data):
        raise OnnxFaultError(f"{path} holds {len(data)} images but {len(y)} labels; the file is corrupt")
    # Each row stores the red, green and blue 32×32 planes in turn: channels first.
    return in_memory(f"CIFAR batch {path.name}", data.reshape(-1, 3, 32, 32), y, "chw")
