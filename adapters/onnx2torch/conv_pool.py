"""Convolutions and pooling (1-D, 2-D and 3-D; ONNX is channels-first)."""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from .registry import Node, OpFn, converter


def spatial_pads(node: Node, x: torch.Tensor, kernel, strides, dilations) -> list[int]:
    """ONNX pads (begins…, ends…) for this input, resolving auto_pad SAME_UPPER/SAME_LOWER."""
    spatial = x.shape[2:]
    auto = node.attr("auto_pad", "NOTSET")
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        totals = [max((math.ceil(n / s) - 1) * s + (k - 1) * d + 1 - n, 0)
                  for n, k, s, d in zip(spatial, kernel, strides, dilations)]
        small = [t // 2 for t in totals]
        big = [t - t // 2 for t in totals]
        return (small + big) if auto == "SAME_UPPER" else (big + small)
    if auto == "VALID":
        return [0] * (2 * len(spatial))
    return list(node.attr("pads", [0] * (2 * len(spatial))))


def torch_pad(pads: list[int]) -> list[int]:
    """ONNX (b1, b2, …, e1, e2, …) → F.pad's (last-axis begin, end, …)."""
    n = len(pads) // 2
    out = []
    for i in reversed(range(n)):
        out += [pads[i], pads[i + n]]
    return out


def _geometry(node: Node, w: torch.Tensor) -> tuple[list[int], list[int], list[int]]:
    """Kernel size, strides and dilations of a convolution with weights ``w``."""
    k = list(w.shape[2:])
    return k, list(node.attr("strides", [1] * len(k))), list(node.attr("dilations", [1] * len(k)))


@converter("Conv")
def _conv(node: Node) -> OpFn:
    group = node.attr("group", 1)

    def conv(x, w, b=None):
        k, strides, dilations = _geometry(node, w)
        pads = spatial_pads(node, x, k, strides, dilations)
        fn = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[len(k)]
        if any(pads):
            x = F.pad(x, torch_pad(pads))
        return fn(x, w, b, stride=strides, dilation=dilations, groups=group)

    return conv


@converter("ConvTranspose")
def _conv_transpose(node: Node) -> OpFn:
    group = node.attr("group", 1)

    def deconv(x, w, b=None):
        k, strides, dilations = _geometry(node, w)
        pads = list(node.attr("pads", [0] * (2 * len(k))))
        if pads[:len(k)] != pads[len(k):]:
            raise node.unsupported("asymmetric pads")
        out_pad = list(node.attr("output_padding", [0] * len(k)))
        fn = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}[len(k)]
        return fn(x, w, b, stride=strides, padding=pads[:len(k)], output_padding=out_pad, groups=group,
                  dilation=dilations)

    return deconv


@converter("MaxPool", "AveragePool")
def _pool(node: Node) -> OpFn:
    kernel = list(node.attr("kernel_shape"))
    strides = list(node.attr("strides", [1] * len(kernel)))
    dilations = list(node.attr("dilations", [1] * len(kernel)))
    ceil = bool(node.attr("ceil_mode", 0))
    include_pad = bool(node.attr("count_include_pad", 0))
    is_max = node.op == "MaxPool"
    if len(kernel) != 2:
        raise node.unsupported(f"{len(kernel)} spatial axes")

    def pool(x):
        pads = spatial_pads(node, x, kernel, strides, dilations)
        if is_max:
            if any(pads):
                x = F.pad(x, torch_pad(pads), value=-math.inf)
            return F.max_pool2d(x, kernel, strides, 0, dilations, ceil_mode=ceil)
        if not any(pads):
            return F.avg_pool2d(x, kernel, strides, 0, ceil_mode=ceil)
        padded = F.pad(x, torch_pad(pads))
        total = F.avg_pool2d(padded, kernel, strides, 0, ceil_mode=ceil, divisor_override=1)
        if include_pad:
            return total / float(np.prod(kernel))
        ones = F.pad(torch.ones_like(x[:1, :1]), torch_pad(pads))
        return total / F.avg_pool2d(ones, kernel, strides, 0, ceil_mode=ceil, divisor_override=1)

    return pool


@converter("GlobalAveragePool", "GlobalMaxPool")
def _global_pool(node: Node) -> OpFn:
    if node.op == "GlobalAveragePool":
        return lambda x: x.mean(dim=tuple(range(2, x.dim())), keepdim=True)
    return lambda x: x.amax(dim=tuple(range(2, x.dim())), keepdim=True)
