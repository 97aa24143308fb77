"""Reductions: ReduceSum, ReduceMean, ReduceMax, ReduceMin, ReduceProd, ReduceSumSquare, ReduceL1, ReduceL2,
ReduceLogSum, ReduceLogSumExp; ArgMax, ArgMin; running reductions CumSum, CumProd."""
from __future__ import annotations

import torch

from .registry import Node, OpFn, axis_of, converter, ints, scalar


def reduce_axes(node: Node, axes_input):
    """The axes to reduce: an input from opset 18 (ReduceSum: 13), an attribute before; None = all."""
    if node.opset >= 18 or (node.op == "ReduceSum" and node.opset >= 13):
        return None if axes_input is None else ints(axes_input)
    axes = node.attr("axes")
    return None if axes is None else list(axes)


def _dims(node: Node, x: torch.Tensor, axes_input) -> tuple[int, ...]:
    """The dims to reduce, sorted: all of them when axes are absent or empty, unless noop_with_empty_axes
    asks for none (then only the op's elementwise part applies: ReduceSumSquare squares, …)."""
    axes = reduce_axes(node, axes_input)
    if not axes:
        return () if node.attr("noop_with_empty_axes", 0) else tuple(range(x.dim()))
    return tuple(sorted({axis_of(a, x.dim()) for a in axes}))


def _reduced_shape(x: torch.Tensor, dims: tuple[int, ...], keep: bool) -> list[int]:
    return [1 if d in dims else n for d, n in enumerate(x.shape) if keep or d not in dims]


def _sum(x, dims, keep):
    return torch.sum(x, dim=dims, keepdim=keep, dtype=x.dtype)  # int32 stays int32 (torch would widen)


def _prod(x, dims, keep):
    for d in reversed(dims):  # torch.prod takes one dim; from the last so the earlier indices stay valid
        x = torch.prod(x, d, keepdim=keep, dtype=x.dtype)
    return x


def _extreme(fn, sign: int):
    """amax/amin, with the reduction over an empty set giving its identity (-inf for max, +inf for min;
    the integer type's extreme, or False/True for bool), which torch refuses."""

    def identity(dtype: torch.dtype):
        if dtype == torch.bool:
            return sign < 0
        if dtype.is_floating_point:
            return -sign * float("inf")
        return torch.iinfo(dtype).min if sign > 0 else torch.iinfo(dtype).max

    def reduce(x, dims, keep):
        if any(x.shape[d] == 0 for d in dims):
            return x.new_full(_reduced_shape(x, dims, keep), identity(x.dtype))
        return fn(x, dim=dims, keepdim=keep)

    return reduce


def _in_float(fn):
    """``fn`` on an integer tensor computed in float64 and truncated back: ONNX keeps the input type."""

    def reduce(x, *args):
        return fn(x, *args) if x.is_floating_point() else fn(x.double(), *args).to(x.dtype)

    return reduce


# op -> (reduction over dims, its elementwise part alone for noop_with_empty_axes)
_REDUCTIONS = {
    "ReduceSum": (_sum, None),
    "ReduceMean": (_in_float(lambda x, dims, keep: torch.mean(x, dim=dims, keepdim=keep)), None),
    "ReduceMax": (_extreme(torch.amax, 1), None),
    "ReduceMin": (_extreme(torch.amin, -1), None),
    "ReduceProd": (_prod, None),
    "ReduceSumSquare": (lambda x, dims, keep: _sum(x * x, dims, keep), lambda x: x * x),
    "ReduceL1": (lambda x, dims, keep: _sum(x.abs(), dims, keep), torch.abs),
    # vector_norm, not sqrt(sum(x²)): its gradient at 0 is 0, not NaN
    "ReduceL2": (_in_float(lambda x, dims, keep: torch.linalg.vector_norm(x, 2, dim=dims, keepdim=keep)), torch.abs),
    "ReduceLogSum": (_in_float(lambda x, dims, keep: torch.log(_sum(x, dims, keep))), _in_float(torch.log)),
    "ReduceLogSumExp": (_in_float(lambda x, dims, keep: torch.logsumexp(x, dim=dims, keepdim=keep)), None),
}


@converter(*_REDUCTIONS)
def _reduce(node: Node) -> OpFn:
    keep = bool(node.attr("keepdims", 1))
    reduction, elementwise = _REDUCTIONS[node.op]

    def reduce(x, axes_input=None):
        dims = _dims(node, x, axes_input)
        if not dims:
            return x if elementwise is None else elementwise(x)
        return reduction(x, dims, keep)

    return reduce


@converter("ArgMax", "ArgMin")
def _arg_extreme(node: Node) -> OpFn:
    axis, keep = int(node.attr("axis", 0)), bool(node.attr("keepdims", 1))
    last = bool(node.attr("select_last_index", 0))
    fn = torch.argmax if node.op == "ArgMax" else torch.argmin

    def arg_extreme(x):
        d = axis_of(axis, x.dim())
        if last:  # torch returns the first of tied extremes: search the flipped axis and map the index back
            return x.shape[d] - 1 - fn(x.flip(d), dim=d, keepdim=keep)
        return fn(x, dim=d, keepdim=keep)

    return arg_extreme


@converter("CumSum", "CumProd")
def _cumulative(node: Node) -> OpFn:
    exclusive, reverse = bool(node.attr("exclusive", 0)), bool(node.attr("reverse", 0))
    fn, identity = (torch.cumsum, 0) if node.op == "CumSum" else (torch.cumprod, 1)

    def cumulative(x, axis):
        d = axis_of(int(scalar(axis)), x.dim())
        if reverse:
            x = x.flip(d)
        if exclusive and x.shape[d]:
            # shift right by one, identity first: element i accumulates x[:i] (no division, so zeros are fine)
            x = torch.cat([torch.full_like(x.narrow(d, 0, 1), identity), x.narrow(d, 0, x.shape[d] - 1)], d)
        y = fn(x, d, dtype=x.dtype)
        return y.flip(d) if reverse else y

    return cumulative
