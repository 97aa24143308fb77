"""Elementwise ops: unary math, binary arithmetic with broadcasting, comparisons and logic, Cast."""
from __future__ import annotations

import math

import torch

from .registry import Node, OpFn, converter, torch_dtype

_UNARY = {
    "Erf": torch.erf, "Exp": torch.exp, "Log": torch.log, "Sqrt": torch.sqrt, "Neg": torch.neg, "Abs": torch.abs,
    "Identity": lambda x: x, "Floor": torch.floor, "Ceil": torch.ceil, "Reciprocal": torch.reciprocal,
}
_BINARY = {"Add": torch.add, "Sub": torch.sub, "Mul": torch.mul, "Pow": torch.pow}


@converter(*_UNARY)
def _unary(node: Node) -> OpFn:
    return _UNARY[node.op]


@converter(*_BINARY)
def _binary(node: Node) -> OpFn:
    return _BINARY[node.op]


@converter("Div")
def _div(node: Node) -> OpFn:
    return lambda a, b: torch.div(a, b, rounding_mode="trunc") if not a.is_floating_point() else a / b


@converter("Clip")
def _clip(node: Node) -> OpFn:
    if node.opset < 11:
        low, high = node.attr("min", -math.inf), node.attr("max", math.inf)
        return lambda x: torch.clamp(x, low, high)

    def clip(x, low=None, high=None):
        return torch.clamp(x, None if low is None else low.item(), None if high is None else high.item())

    return clip


@converter("Cast")
def _cast(node: Node) -> OpFn:
    dtype = torch_dtype(node, node.attr("to"))
    return lambda x: x.to(dtype)
