"""ONNX (sub-)graph → ``torch.nn.Module``, for gradients with respect to the input.

One converter per ONNX op type, in one registry (``registry.CONVERTERS``), written by op family:
``elementwise``, ``activations``, ``linear``, ``conv_pool``, ``normalization``, ``shape``, ``indexing``,
``reduce``, ``resize``, ``attention``, ``recurrent``, ``loss``, ``fourier`` and ``ml`` (domain ai.onnx.ml);
``module`` runs them.
Weights become frozen buffers (``requires_grad=False``); only the input gets gradients.
"""
from __future__ import annotations

from . import (activations, attention, control, conv_pool, elementwise, indexing, linear, loss,  # noqa: F401 - registration
               ml, normalization, recurrent, reduce, resize, shape, fourier)
from .module import OnnxModule, to_torch
from .registry import CONVERTERS, Node, converter, supported_ops

__all__ = ["CONVERTERS", "Node", "OnnxModule", "converter", "supported_ops", "to_torch"]
