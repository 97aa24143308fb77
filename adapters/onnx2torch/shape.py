"""Shape and data movement: Reshape, Flatten, Transpose, Squeeze, Unsqueeze, Concat, Split, Slice, Pad, Expand,
Tile, Shape, Size, Range, Trilu, DepthToSpace, SpaceToDepth, CenterCropPad, EyeLike, Dropout, Constant,
ConstantOfShape (Identity lives with the element-wise ops).

Shape arithmetic (Shape → Gather → Concat → Reshape, as exporters write a dynamic flatten) runs on int64
tensors on the input's device, as in onnxruntime.
"""
from __future__ import annotations

import math

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper

from .conv_pool import torch_pad
from .registry import Node, OpFn, axis_of, converter, ints, scalar, torch_dtype


@converter("Flatten")
def _flatten(node: Node) -> OpFn:
    axis = node.attr("axis", 1)

    def flatten(x):
        a = axis_of(axis, x.dim())
        return x.reshape(math.prod(x.shape[:a]), math.prod(x.shape[a:]))

    return flatten


@converter("Reshape")
def _reshape(node: Node) -> OpFn:
    allow_zero = node.attr("allowzero", 0)

    def reshape(x, shape=None):
        target = ints(node.attr("shape") if node.opset < 5 else shape)
        if not allow_zero:  # 0 copies the input's dimension; with allowzero it is an empty dimension
            target = [x.shape[i] if d == 0 else d for i, d in enumerate(target)]
        return x.reshape(target)

    return reshape


@converter("Transpose")
def _transpose(node: Node) -> OpFn:
    perm = node.attr("perm")
    return lambda x: x.permute(*(perm if perm is not None else reversed(range(x.dim()))))


@converter("Concat")
def _concat(node: Node) -> OpFn:
    axis = node.attr("axis", 1 if node.opset < 4 else None)  # required from opset 4
    if axis is None:
        raise node.unsupported("no axis")
    return lambda *xs: torch.cat(xs, dim=axis_of(axis, xs[0].dim()))


@converter("Split")
def _split(node: Node) -> OpFn:
    axis = node.attr("axis", 0)
    count = node.attr("num_outputs", node.slots)  # unnamed trailing outputs still take their part

    def split(x, sizes=None):
        a = axis_of(axis, x.dim())
        if node.opset < 13 and "split" in node.attrs:
            sizes = node.attr("split")
        if sizes is not None and len(ints(sizes)):
            return torch.split(x, ints(sizes), dim=a)
        if not count:
            raise node.unsupported("no split sizes and no outputs")
        n = x.shape[a]
        chunk = -(-n // count)  # uneven: every chunk ceil(n / count) long but the last
        return torch.split(x, [chunk] * (count - 1) + [n - chunk * (count - 1)], dim=a)

    return split


@converter("Shape")
def _shape(node: Node) -> OpFn:
    start, end = node.attr("start", 0), node.attr("end")  # Python slicing clamps as ONNX says
    return lambda x: torch.tensor(list(x.shape)[start:end], dtype=torch.int64, device=x.device)


@converter("Size")
def _size(node: Node) -> OpFn:
    return lambda x: torch.tensor(x.numel(), dtype=torch.int64, device=x.device)


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
            starts, ends, axes = node.attr("starts"), node.attr("ends"), node.attr("axes") or None
        starts, ends = ints(starts), ints(ends)
        axes = range(len(starts)) if axes is None else ints(axes)
        steps = [1] * len(starts) if steps is None else ints(steps)
        index = [slice(None)] * x.dim()
        for s, e, a, st in zip(starts, ends, axes, steps):
            index[axis_of(a, x.dim())] = slice(s, e, st)  # Python's slice clamping is ONNX's
        if all(s.step is None or s.step > 0 for s in index):
            return x[tuple(index)]
        for a, s in enumerate(index):  # torch has no negative steps: take the positions explicitly
            if s.step is not None and s.step < 0:
                r = range(*s.indices(x.shape[a]))
                x = x.index_select(a, r.start + r.step * torch.arange(len(r), device=x.device))
                index[a] = slice(None)
        return x[tuple(index)]

    return slice_


def _pad_positions(n: int, begin: int, end: int, mode: str, device) -> torch.Tensor:
    """The source position of every output position of an axis of length n padded by (begin, end) >= 0,
    as numpy.pad's reflect/edge/wrap modes read them."""
    pos = torch.arange(-begin, n + end, device=device)
    if mode == "edge":
        return pos.clamp(0, n - 1)
    if mode == "wrap":
        return pos.remainder(n)
    if n == 1:
        return torch.zeros_like(pos)
    period = 2 * (n - 1)  # reflect without repeating the edge: period 2(n-1)
    p = pos.remainder(period)
    return torch.where(p >= n, period - p, p)


def pad_tensor(x: torch.Tensor, pads: list[int], mode: str = "constant", value=0.0, axes=None) -> torch.Tensor:
    """ONNX Pad: ``pads`` = (begins…, ends…) for ``axes`` (default every axis), any rank, negative pads crop."""
    axes = list(range(x.dim())) if axes is None else [axis_of(a, x.dim()) for a in axes]
    begin, end = dict(zip(axes, pads[:len(axes)])), dict(zip(axes, pads[len(axes):]))
    if mode == "constant":
        every = range(x.dim())
        return F.pad(x, torch_pad([begin.get(a, 0) for a in every] + [end.get(a, 0) for a in every]), value=value)
    for a in axes:  # negative pads crop first, then the rest pads what is left (as onnxruntime does)
        cut_begin, cut_end = max(-begin[a], 0), max(-end[a], 0)
        x = x.narrow(a, cut_begin, x.shape[a] - cut_begin - cut_end)
        if max(begin[a], 0) or max(end[a], 0):
            x = x.index_select(a, _pad_positions(x.shape[a], max(begin[a], 0), max(end[a], 0), mode, x.device))
    return x


@converter("Pad")
def _pad(node: Node) -> OpFn:
    mode = node.attr("mode", "constant")
    if mode not in ("constant", "reflect", "edge", "wrap"):
        raise node.unsupported(f"mode {mode}")

    def pad(x, pads=None, value=None, axes=None):
        if node.opset < 11:
            pads, value = node.attr("paddings" if node.opset < 2 else "pads"), node.attr("value", 0.0)
        fill = scalar(value, 0) if not isinstance(value, torch.Tensor) or value.numel() else 0  # empty: 0
        return pad_tensor(x, ints(pads), mode, fill, None if axes is None else ints(axes))

    return pad


@converter("CenterCropPad")
def _center_crop_pad(node: Node) -> OpFn:
    def center_crop_pad(x, shape):
        axes = node.attr("axes") or list(range(x.dim()))
        target = ints(shape)
        begins, ends = [], []
        for a, t in zip(axes, target):
            d = t - x.shape[axis_of(a, x.dim())]  # > 0 pads, < 0 crops; the odd one goes to the end
            begins.append(d // 2 if d >= 0 else -(-d // 2))
            ends.append(d - begins[-1])
        return pad_tensor(x, begins + ends, "constant", 0, axes)

    return center_crop_pad


@converter("Expand")
def _expand(node: Node) -> OpFn:
    """Two-way broadcast: a dimension of 1 in ``shape`` keeps the input's."""
    return lambda x, shape: x.expand(torch.broadcast_shapes(tuple(x.shape), tuple(ints(shape))))


@converter("Tile")
def _tile(node: Node) -> OpFn:
    return lambda x, repeats: x.repeat(*ints(repeats))


@converter("Range")
def _range(node: Node) -> OpFn:
    stash = {11: torch.float64}.get(node.attr("stash_type", 1), torch.float32)

    def range_(start, limit, delta):
        dtype = start.dtype
        work = stash if dtype in (torch.float16, torch.bfloat16) else dtype  # half types count in float
        s, d = start.reshape(()).to(work), delta.reshape(()).to(work)
        span = scalar(limit.to(work)) - scalar(s)
        n = max(-(-span // scalar(d)) if not work.is_floating_point else math.ceil(span / scalar(d)), 0)
        return (s + torch.arange(n, dtype=work, device=start.device) * d).to(dtype)

    return range_


@converter("Trilu")
def _trilu(node: Node) -> OpFn:
    upper = node.attr("upper", 1)
    return lambda x, k=None: (torch.triu if upper else torch.tril)(x, int(scalar(k, 0)))


@converter("EyeLike")
def _eye_like(node: Node) -> OpFn:
    k, dtype = node.attr("k", 0), node.attr("dtype")
    out_dtype = None if dtype is None else torch_dtype(node, dtype)

    def eye_like(x):
        rows = torch.arange(x.shape[0], device=x.device)[:, None]
        cols = torch.arange(x.shape[1], device=x.device)
        return (cols - rows == k).to(out_dtype or x.dtype)

    return eye_like


def _block_shuffle(node: Node, to_space: bool) -> OpFn:
    bs, mode = node.attr("blocksize"), node.attr("mode", "DCR")
    if mode not in ("DCR", "CRD"):
        raise node.unsupported(f"mode {mode}")

    def depth_to_space(x):
        b, c, h, w = x.shape
        if mode == "DCR":  # depth is (block row, block column, channel)
            y = x.reshape(b, bs, bs, c // bs ** 2, h, w).permute(0, 3, 4, 1, 5, 2)
        else:  # depth is (channel, block row, block column)
            y = x.reshape(b, c // bs ** 2, bs, bs, h, w).permute(0, 1, 4, 2, 5, 3)
        return y.reshape(b, c // bs ** 2, h * bs, w * bs)

    def space_to_depth(x):
        b, c, h, w = x.shape
        y = x.reshape(b, c, h // bs, bs, w // bs, bs)
        y = y.permute(0, 3, 5, 1, 2, 4) if mode == "DCR" else y.permute(0, 1, 3, 5, 2, 4)
        return y.reshape(b, c * bs ** 2, h // bs, w // bs)

    return depth_to_space if to_space else space_to_depth


@converter("DepthToSpace")
def _depth_to_space(node: Node) -> OpFn:
    return _block_shuffle(node, to_space=True)


@converter("SpaceToDepth")
def _space_to_depth(node: Node) -> OpFn:
    return _block_shuffle(node, to_space=False)


@converter("Dropout")
def _dropout(node: Node) -> OpFn:
    """Inference (the default, and always before opset 12): the input, and an all-True mask when asked.
    With training_mode true and a ratio > 0, real random dropout as the spec says."""
    seed = node.attr("seed")

    def dropout(x, ratio=None, training_mode=None):
        ratio = scalar(ratio, 0.5) if node.opset >= 12 else node.attr("ratio", 0.5)
        training = node.opset >= 12 and bool(scalar(training_mode, False))
        if not training or ratio == 0:
            y, mask = x, torch.ones(x.shape, dtype=torch.bool, device=x.device)
        else:
            gen = None if seed is None else torch.Generator(x.device).manual_seed(int(seed))
            mask = torch.rand(x.shape, generator=gen, device=x.device) >= ratio
            y = x * mask.to(x.dtype) / (1 - ratio)
        if node.outputs < 2:
            return y
        return y, mask if node.opset >= 10 else mask.to(x.dtype)

    return dropout


def _dense(sparse: onnx.SparseTensorProto) -> np.ndarray:
    """A SparseTensorProto as a dense array (indices are linear [NNZ] or coordinates [NNZ, rank])."""
    values, indices = numpy_helper.to_array(sparse.values), numpy_helper.to_array(sparse.indices)
    dims = tuple(sparse.dims)
    dense = np.zeros(int(np.prod(dims)), dtype=values.dtype)
    linear = indices if indices.ndim == 1 else np.ravel_multi_index(tuple(indices.T), dims)
    dense[linear] = values
    return dense.reshape(dims)


@converter("Constant")
def _constant(node: Node) -> OpFn:
    attrs = node.attrs
    if "value" in attrs:
        value = np.array(attrs["value"])
    elif "sparse_value" in attrs:
        value = _dense(attrs["sparse_value"])
    elif "value_float" in attrs or "value_floats" in attrs:
        value = np.array(attrs.get("value_float", attrs.get("value_floats")), dtype=np.float32)
    elif "value_int" in attrs or "value_ints" in attrs:
        value = np.array(attrs.get("value_int", attrs.get("value_ints")), dtype=np.int64)
    else:
        raise node.unsupported("a string value" if {"value_string", "value_strings"} & set(attrs) else "no value")
    if value.dtype.kind in "SUO":
        raise node.unsupported("a string value")
    tensor = torch.from_numpy(value)
    return lambda: tensor


@converter("ConstantOfShape")
def _constant_of_shape(node: Node) -> OpFn:
    value = node.attr("value")
    value = np.zeros(1, np.float32) if value is None else np.asarray(value)
    dtype, fill = torch.from_numpy(value.reshape(-1)[:1].copy()).dtype, value.reshape(-1)[0].item()
    return lambda shape: torch.full(ints(shape), fill, dtype=dtype, device=shape.device)
