"""Shape and data movement: Reshape, Flatten, Transpose, (Un)Squeeze, Concat, Slice, Pad, Shape, constants.

Shape arithmetic (Shape → Gather → Concat → Reshape, as exporters write a dynamic flatten) runs on int64
tensors, as in onnxruntime.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .conv_pool import torch_pad
from .registry import Node, OpFn, axis_of, converter, ints


@converter("Flatten")
def _flatten(node: Node) -> OpFn:
    axis = node.attr("axis", 1)
    return lambda x: x.reshape(int(np.prod(x.shape[:axis_of(axis, x.dim())])), -1)


@converter("Reshape")
def _reshape(node: Node) -> OpFn:
    allow_zero = node.attr("allowzero", 0)

    def reshape(x, shape):
        target = ints(shape)
        if not allow_zero:
            target = [x.shape[i] if d == 0 else d for i, d in enumerate(target)]
        return x.reshape(target)

    return reshape


@converter("Transpose")
def _transpose(node: Node) -> OpFn:
    perm = node.attr("perm")
    return lambda x: x.permute(*(perm if perm is not None else reversed(range(x.dim()))))


@converter("Concat")
def _concat(node: Node) -> OpFn:
    axis = node.attr("axis")
    return lambda *xs: torch.cat(xs, dim=axis_of(axis, xs[0].dim()))


@converter("Shape")
def _shape(node: Node) -> OpFn:
    start, end = node.attr("start", 0), node.attr("end")
    return lambda x: torch.tensor(list(x.shape), dtype=torch.int64)[start:end]


@converter("Gather")
def _gather(node: Node) -> OpFn:
    axis = node.attr("axis", 0)

    def gather(x, indices):
        a = axis_of(axis, x.dim())
        idx = torch.where(indices < 0, indices + x.shape[a], indices).long()
        out = torch.index_select(x, a, idx.reshape(-1))
        return out.reshape(tuple(x.shape[:a]) + tuple(idx.shape) + tuple(x.shape[a + 1:]))

    return gather


def _axes_arg(node: Node, axes_input) -> list[int]:
    """Axes from the attribute (opset < 13) or the optional input (none given: [])."""
    if node.opset < 13:
        return list(node.attr("axes", []))
    return [] if axes_input is None else ints(axes_input)


@converter("Unsqueeze")
def _unsqueeze(node: Node) -> OpFn:
    def unsqueeze(x, axes_input=None):
        axes = _axes_arg(node, axes_input)
        rank = x.dim() + len(axes)
        for a in sorted(axis_of(a, rank) for a in axes):
            x = x.unsqueeze(a)
        return x

    return unsqueeze


@converter("Squeeze")
def _squeeze(node: Node) -> OpFn:
    def squeeze(x, axes_input=None):
        axes = _axes_arg(node, axes_input)
        if not axes:
            return x.squeeze()
        for a in sorted((axis_of(a, x.dim()) for a in axes), reverse=True):
            x = x.squeeze(a)
        return x

    return squeeze


@converter("Slice")
def _slice(node: Node) -> OpFn:
    def slice_(x, starts=None, ends=None, axes=None, steps=None):
        if node.opset < 10:
            starts, ends, axes = node.attr("starts"), node.attr("ends"), node.attr("axes")
        starts, ends = ints(starts), ints(ends)
        axes = list(range(len(starts))) if axes is None else ints(axes)
        steps = [1] * len(starts) if steps is None else ints(steps)
        index = [slice(None)] * x.dim()
        for s, e, a, st in zip(starts, ends, axes, steps):
            if st < 0:
                raise node.unsupported("a negative step")
            n = x.shape[axis_of(a, x.dim())]
            s = max(0, min(n, s + n if s < 0 else s))
            e = max(0, min(n, e + n if e < 0 else e))
            index[axis_of(a, x.dim())] = slice(s, e, st)
        return x[tuple(index)]

    return slice_


@converter("Pad")
def _pad(node: Node) -> OpFn:
    mode = node.attr("mode", "constant")

    def pad(x, pads=None, value=None, axes=None):
        if node.opset < 11:
            pads, value = node.attr("pads"), node.attr("value", 0.0)
        pads = ints(pads)
        if axes is not None:
            full = [0] * (2 * x.dim())
            for i, a in enumerate(ints(axes)):
                full[axis_of(a, x.dim())], full[axis_of(a, x.dim()) + x.dim()] = pads[i], pads[i + len(pads) // 2]
            pads = full
        fill = 0.0 if value is None else float(value if not isinstance(value, torch.Tensor) else value.item())
        if mode == "constant":
            return F.pad(x, torch_pad(pads), value=fill)
        return F.pad(x, torch_pad(pads)[: 2 * (x.dim() - 2)], mode={"reflect": "reflect", "edge": "replicate"}[mode])

    return pad


@converter("Dropout")
def _dropout(node: Node) -> OpFn:
    return lambda x, *_: x


@converter("Constant")
def _constant(node: Node) -> OpFn:
    value = node.attr("value")
    if value is None:
        for key in ("value_float", "value_int", "value_floats", "value_ints"):
            if key in node.attrs:
                value = np.asarray(node.attrs[key])
                break
    tensor = torch.from_numpy(np.array(value))
    return lambda: tensor


@converter("ConstantOfShape")
def _constant_of_shape(node: Node) -> OpFn:
    value = node.attr("value")
    fill = torch.from_numpy(np.array(value)).reshape(-1) if value is not None else torch.zeros(1)
    return lambda shape: fill.expand(ints(shape)).clone() if ints(shape) else fill.reshape(())

