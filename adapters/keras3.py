"""Keras 3 models (``.keras`` files or in-memory) → ONNX through Keras' own exporter (TensorFlow
backend; ``pip install "onnxfault[keras]"``). ``tf2onnx.convert.from_keras`` does not work on Keras 3.

tf2onnx names nodes ``<model>/<layer>_<n>/<op>``; each layer's single output tensor is renamed to the
Keras layer name (``conv1``, ``dense_3``), so it can be named in ``--layers``.
"""
from __future__ import annotations

import os
import re
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from onnxfault.errors import OnnxFaultError
from onnxfault.quiet import silenced_fds

INSTALL_HINT = "install TensorFlow with `pip install \"onnxfault[keras]\"`"


@contextmanager
def _quiet():
    """Silence TensorFlow's C++ start-up lines (printed before its logging can be configured) and
    tf2onnx's numpy warnings; Python exceptions still propagate."""
    with silenced_fds(2), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _keras():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    try:
        with _quiet():
            import keras
            import tensorflow  # noqa: F401 - the exporter needs the TensorFlow backend
    except ImportError as err:
        raise OnnxFaultError(f"reading Keras 3 models needs TensorFlow ({err.name} is missing); {INSTALL_HINT}") from None
    return keras


def load_keras(path: str | Path):
    """A ``.keras`` model file, loaded in Keras' safe mode (no arbitrary code from the file)."""
    keras = _keras()
    try:
        return keras.saving.load_model(str(path), compile=False, safe_mode=True)
    except Exception as err:  # Keras raises many types for a bad file
        raise OnnxFaultError(f"Keras cannot load {path}: {str(err).splitlines()[0]}") from err


def _layer_scope(layer_names: set[str]):
    def scope_of(node_name: str) -> str | None:
        for part in reversed(node_name.split("/")[:-1]):
            for candidate in (part, re.sub(r"_\d+$", "", part)):
                if candidate in layer_names:
                    return candidate
        return None

    return scope_of


def from_keras(model, path: str | Path, *, opset: int = 17):
    """Export an in-memory Keras 3 model to ``path``, validated; returns a ConvertResult."""
    _keras()
    from .conversion import save_validated

    if not getattr(model, "_called", True):  # the exporter needs a model that has run once
        shape = model.inputs[0].shape
        model(np.zeros((1, *shape[1:]), np.float32))
    names = {layer.name for layer in model.layers}

    def export(tmp: Path) -> None:
        with _quiet():
            model.export(str(tmp), format="onnx", verbose=False, opset_version=opset)

    return save_validated(path, export, "keras", _layer_scope(names))
