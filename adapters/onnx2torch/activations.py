"""Activation functions, Softmax, LogSoftmax and Hardmax.

Ops: Celu Elu Gelu HardSigmoid HardSwish Hardmax LeakyRelu LogSoftmax Mish PRelu Relu Selu Shrink Sigmoid
Softmax Softplus Softsign Swish SwiGLU ThresholdedRelu Tanh.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .registry import Node, OpFn, axis_of, converter

_PLAIN = {"Relu": F.relu, "Sigmoid": torch.sigmoid, "Tanh": torch.tanh, "Softplus": F.softplus,
          "Softsign": F.softsign, "Mish": F.mish}


@converter(*_PLAIN)
def _plain(node: Node) -> OpFn:
    return _PLAIN[node.op]


_WITH_ALPHA = {"LeakyRelu": (F.leaky_relu, 0.01), "Elu": (F.elu, 1.0), "Celu": (F.celu, 1.0)}


@converter(*_WITH_ALPHA)
def _with_alpha(node: Node) -> OpFn:
    fn, default = _WITH_ALPHA[node.op]
    alpha = node.attr("alpha", default)
    return lambda x: fn(x, alpha)


@converter("Selu")
def _selu(node: Node) -> OpFn:
    alpha, gamma = node.attr("alpha", 1.67326319217681884765625), node.attr("gamma", 1.05070102214813232421875)
    return lambda x: gamma * torch.where(x > 0, x, alpha * torch.expm1(x))


@converter("Gelu")
def _gelu(node: Node) -> OpFn:
    approximate = node.attr("approximate", "none")
    if approximate not in ("none", "tanh"):
        raise node.unsupported(f"approximate '{approximate}'")
    return lambda x: F.gelu(x, approximate=approximate)


@converter("PRelu")
def _prelu(node: Node) -> OpFn:
    return lambda x, slope: torch.where(x >= 0, x, x * slope)


@converter("ThresholdedRelu")
def _thresholded_relu(node: Node) -> OpFn:
    alpha = node.attr("alpha", 1.0)
    return lambda x: torch.where(x > alpha, x, torch.zeros_like(x))


@converter("Shrink")
def _shrink(node: Node) -> OpFn:
    lambd, bias = node.attr("lambd", 0.5), node.attr("bias", 0.0)

    def shrink(x):  # also defined for integer types: the result keeps the input's type
        shrunk = torch.where(x < -lambd, x + bias, torch.where(x > lambd, x - bias, torch.zeros_like(x)))
        return shrunk.to(x.dtype)

    return shrink


@converter("HardSigmoid")
def _hard_sigmoid(node: Node) -> OpFn:
    alpha, beta = node.attr("alpha", 0.2), node.attr("beta", 0.5)
    return lambda x: torch.clamp(alpha * x + beta, 0.0, 1.0)


@converter("HardSwish")
def _hard_swish(node: Node) -> OpFn:
    return lambda x: x * torch.clamp(x / 6.0 + 0.5, 0.0, 1.0)


@converter("Swish")
def _swish(node: Node) -> OpFn:
    alpha = node.attr("alpha", 1.0)
    return lambda x: x * torch.sigmoid(alpha * x)


@converter("SwiGLU")
def _swiglu(node: Node) -> OpFn:
    alpha = node.attr("alpha", 1.0)
    return lambda gate, value: gate * torch.sigmoid(alpha * gate) * value


def _along_axis(node: Node, fn) -> OpFn:
    """``fn(x, axis)`` at the node's axis. Before opset 13 these ops flatten the input to 2-D at ``axis``
    (default 1) and work on the whole trailing block."""
    axis = node.attr("axis", -1 if node.opset >= 13 else 1)
    if node.opset >= 13:
        return lambda x: fn(x, axis_of(axis, x.dim()))

    def coerced(x):
        a = axis_of(axis, x.dim())
        return fn(x.reshape(math.prod(x.shape[:a]), -1), 1).reshape(x.shape)

    return coerced


def _hardmax(x: torch.Tensor, axis: int) -> torch.Tensor:
    """1 at the first maximum along ``axis``, 0 elsewhere (piecewise constant: zero gradient)."""
    if x.numel() == 0:
        return torch.zeros_like(x)
    first = torch.argmax(x, dim=axis, keepdim=True)
    return torch.zeros_like(x).scatter(axis, first, 1.0)


@converter("Softmax", "LogSoftmax", "Hardmax")
def _softmax(node: Node) -> OpFn:
    fn = {"Softmax": torch.softmax, "LogSoftmax": torch.log_softmax, "Hardmax": _hardmax}[node.op]
    return _along_axis(node, fn)
