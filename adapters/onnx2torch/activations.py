"""Activation functions, Softmax and LogSoftmax."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .registry import Node, OpFn, axis_of, converter

_PLAIN = {"Relu": F.relu, "Sigmoid": torch.sigmoid, "Tanh": torch.tanh, "Softplus": F.softplus,
          "Softsign": F.softsign}


@converter(*_PLAIN)
def _plain(node: Node) -> OpFn:
    return _PLAIN[node.op]


@converter("LeakyRelu")
def _leaky(node: Node) -> OpFn:
    alpha = node.attr("alpha", 0.01)
    return lambda x: F.leaky_relu(x, alpha)


@converter("Elu")
def _elu(node: Node) -> OpFn:
    alpha = node.attr("alpha", 1.0)
    return lambda x: F.elu(x, alpha)


@converter("Selu")
def _selu(node: Node) -> OpFn:
    alpha, gamma = node.attr("alpha", 1.67326319217681884765625), node.attr("gamma", 1.05070102214813232421875)
    return lambda x: gamma * torch.where(x > 0, x, alpha * torch.expm1(x))


@converter("PRelu")
def _prelu(node: Node) -> OpFn:
    return lambda x, slope: torch.where(x >= 0, x, x * slope)


@converter("HardSigmoid")
def _hard_sigmoid(node: Node) -> OpFn:
    alpha, beta = node.attr("alpha", 0.2), node.attr("beta", 0.5)
    return lambda x: torch.clamp(alpha * x + beta, 0.0, 1.0)


@converter("HardSwish")
def _hard_swish(node: Node) -> OpFn:
    return lambda x: x * torch.clamp(x / 6.0 + 0.5, 0.0, 1.0)


@converter("Softmax", "LogSoftmax")
def _softmax(node: Node) -> OpFn:
    fn = torch.softmax if node.op == "Softmax" else torch.log_softmax
    axis = node.attr("axis", -1 if node.opset >= 13 else 1)
    if node.opset >= 13:
        return lambda x: fn(x, axis_of(axis, x.dim()))

    def coerced(x):  # before opset 13: flatten to 2-D at `axis`, normalise the trailing block
        a = axis_of(axis, x.dim())
        return fn(x.reshape(int(np.prod(x.shape[:a])), -1), 1).reshape(x.shape)

    return coerced
