"""The converter registry: one function per ONNX op type, and what a converter sees of its node.

A converter ``maker(node) -> fn`` is called once per node when the module is built; ``fn(*inputs)`` runs
at every forward pass with the node's inputs as tensors (``None`` for an omitted optional input; trailing
omitted inputs are dropped). ``fn`` returns a tensor, or a tuple with one tensor per node output (ops
with several outputs: Split, TopK, MaxPool with indices, …).
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from onnxfault.errors import OnnxFaultError

OpFn = Callable[..., object]
DEFAULT_DOMAINS = ("", "ai.onnx")


@dataclass
class Node:
    """What a converter sees: op type, decoded attributes, the opset of its domain, how many outputs the
    graph asks of it (trailing unused outputs not counted) and how many output slots the node declares."""

    name: str
    op: str
    attrs: dict
    opset: int
    outputs: int = 1
    domain: str = ""
    slots: int = 1

    def attr(self, key: str, default=None):
        return self.attrs.get(key, default)

    def unsupported(self, what: str) -> OnnxFaultError:
        """The error for an attribute value or input this converter cannot handle."""
        return OnnxFaultError(f"the ONNX→torch adapter does not support {self.op} with {what} (node '{self.name}')")


CONVERTERS: dict[str, Callable[[Node], OpFn]] = {}  # keyed by qualified_name(domain, op)


def qualified_name(domain: str, op: str) -> str:
    """``op`` for the default ONNX domain, ``domain:op`` for another (e.g. ``ai.onnx.preview:FlexAttention``)."""
    return op if domain in DEFAULT_DOMAINS else f"{domain}:{op}"


def converter(*ops: str, domain: str = ""):
    """Register the decorated maker for the ONNX op types ``ops`` of ``domain`` (default: the ONNX domain)."""

    def add(fn):
        for op in ops:
            key = qualified_name(domain, op)
            if key in CONVERTERS:
                raise ValueError(f"two converters for ONNX op {key}")
            CONVERTERS[key] = fn
        return fn

    return add


def supported_ops() -> list[str]:
    """Every ONNX op type the adapter converts (``domain:op`` outside the default domain), sorted."""
    return sorted(CONVERTERS, key=lambda key: (":" in key, key))


# What to use instead of an op that will not convert (the closest name is not always the closest meaning).
_ALTERNATIVES = {
    "QuantizeLinear": "Cast (convert the float model, not its quantized export)",
    "DequantizeLinear": "Cast (convert the float model, not its quantized export)",
    "DynamicQuantizeLinear": "Cast (convert the float model, not its quantized export)",
    "QLinearConv": "Conv", "QLinearMatMul": "MatMul", "ConvInteger": "Conv",
    "SplitToSequence": "Split", "SequenceAt": "Gather", "ConcatFromSequence": "Concat", "SequenceConstruct": "Concat",
    "Bernoulli": "Dropout (inference)", "RandomUniformLike": "ConstantOfShape", "RandomNormalLike": "ConstantOfShape",
    "OptionalGetElement": "Identity", "OptionalHasElement": "Identity",
}


def unsupported_op(op: str, node: str, domain: str = "") -> OnnxFaultError:
    """One line: the op, the node, the nearest supported op, and where the full list is."""
    if domain not in DEFAULT_DOMAINS:
        return OnnxFaultError(f"the ONNX→torch adapter does not support op {op} of domain '{domain}' (node '{node}'); "
                              "only standard ONNX ops (and the few listed by `onnxfault inspect --ops`) convert: "
                              "re-export the model without custom or contrib ops")
    near = _ALTERNATIVES.get(op) or next(iter(difflib.get_close_matches(
        op, [k for k in CONVERTERS if ":" not in k], n=1, cutoff=0.0)), None)
    hint = f"nearest supported: {near}; " if near else ""
    return OnnxFaultError(f"the ONNX→torch adapter does not support op {op} (node '{node}'); {hint}"
                          "`onnxfault inspect --ops` lists every supported op")


# ---- helpers shared by converters -------------------------------------------------------------------------
def ints(values) -> list[int]:
    """A tensor, array or sequence of integers as a Python list."""
    if isinstance(values, torch.Tensor):
        return [int(v) for v in values.reshape(-1).tolist()]
    return [int(v) for v in np.asarray(values).reshape(-1)]


def floats(values) -> list[float]:
    if isinstance(values, torch.Tensor):
        return [float(v) for v in values.reshape(-1).tolist()]
    return [float(v) for v in np.asarray(values).reshape(-1)]


def scalar(value, default=None):
    """A one-element tensor (or None) as a Python number."""
    if value is None:
        return default
    if isinstance(value, torch.Tensor):
        return value.reshape(-1)[0].item()
    return np.asarray(value).reshape(-1)[0].item()


def axis_of(axis: int, rank: int) -> int:
    """A possibly negative axis as a non-negative one."""
    return axis + rank if axis < 0 else axis


# ONNX TensorProto data types → torch dtypes (those torch has)
TORCH_DTYPES = {
    1: torch.float32, 2: torch.uint8, 3: torch.int8, 4: torch.uint16, 5: torch.int16, 6: torch.int32, 7: torch.int64,
    9: torch.bool, 10: torch.float16, 11: torch.float64, 12: torch.uint32, 13: torch.uint64, 16: torch.bfloat16,
}


def torch_dtype(node: Node, onnx_type: int) -> torch.dtype:
    dtype = TORCH_DTYPES.get(int(onnx_type))
    if dtype is None:
        import onnx

        name = onnx.TensorProto.DataType.Name(int(onnx_type)) if int(onnx_type) in onnx.TensorProto.DataType.values() else onnx_type
        raise node.unsupported(f"data type {name}")
    return dtype
