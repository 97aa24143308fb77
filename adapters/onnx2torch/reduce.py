"""Reductions over axes."""
from __future__ import annotations

import torch

from .registry import Node, OpFn, axis_of, converter, ints


def reduce_axes(node: Node, axes_input):
    """The axes to reduce: an input from opset 18 (ReduceSum: 13), an attribute before; None = all."""
    if node.opset >= 18 or (node.op == "ReduceSum" and node.opset >= 13):
        return None if axes_input is None else ints(axes_input)
    axes = node.attr("axes")
    return None if axes is None else list(axes)


@converter("ReduceMean", "ReduceMax", "ReduceSum", "ReduceMin")
def _reduce(node: Node) -> OpFn:
    keep = bool(node.attr("keepdims", 1))
    fn = {"ReduceMean": torch.mean, "ReduceMax": torch.amax, "ReduceSum": torch.sum, "ReduceMin": torch.amin}[node.op]

    def reduce(x, axes_input=None):
        axes = reduce_axes(node, axes_input)
        if axes is None or not axes:
            if axes is not None and node.attr("noop_with_empty_axes", 0):
                return x
            axes = list(range(x.dim()))
        return fn(x, dim=tuple(axis_of(a, x.dim()) for a in axes), keepdim=keep)

    return reduce
