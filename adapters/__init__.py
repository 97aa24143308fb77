"""Framework bridges (installed as ``onnxfault.adapters``): the only code that imports a framework.

Imports are lazy: ``import onnxfault.adapters`` does not import torch.
"""
from __future__ import annotations

import importlib

_EXPORTS = {"from_torch": "torch_export", "from_keras": "keras3", "convert": "conversion",
            "proto_from_torch": "torch_export", "proto_from_keras": "keras3", "load_legacy_keras": "keras_legacy"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'onnxfault.adapters' has no attribute '{name}'")
