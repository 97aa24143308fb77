"""Indexing ops: Gather, GatherElements, GatherND, Scatter, ScatterElements, ScatterND, TensorScatter, OneHot,
Compress, NonZero, Unique, ReverseSequence, TopK, NonMaxSuppression.

Values are always read out of the data tensor by indexing (gather, index_select, scatter), so gradients flow
to the float data; index outputs are int64.
"""
from __future__ import annotations

import math

import torch

from .registry import Node, OpFn, axis_of, converter, ints, scalar

# ONNX reduction → torch.scatter_reduce's
_REDUCE = {"add": "sum", "mul": "prod", "max": "amax", "min": "amin"}


def _wrap(indices: torch.Tensor, size) -> torch.Tensor:
    """Negative indices count from the end."""
    indices = indices.long()
    return torch.where(indices < 0, indices + size, indices)


def _reduction(node: Node) -> str:
    reduction = node.attr("reduction", "none")
    if reduction != "none" and reduction not in _REDUCE:
        raise node.unsupported(f"reduction {reduction}")
    return reduction


def _scatter(x, dim: int, index, updates, reduction: str):
    if reduction == "none":
        return x.scatter(dim, index, updates)
    return x.scatter_reduce(dim, index, updates, _REDUCE[reduction], include_self=True)


@converter("Gather")
def _gather(node: Node) -> OpFn:
    axis = node.attr("axis", 0)

    def gather(x, indices):
        a = axis_of(axis, x.dim())
        idx = _wrap(indices, x.shape[a])
        out = torch.index_select(x, a, idx.reshape(-1))
        return out.reshape(tuple(x.shape[:a]) + tuple(idx.shape) + tuple(x.shape[a + 1:]))

    return gather


@converter("GatherElements")
def _gather_elements(node: Node) -> OpFn:
    axis = node.attr("axis", 0)

    def gather_elements(x, indices):
        a = axis_of(axis, x.dim())
        return torch.gather(x, a, _wrap(indices, x.shape[a]))

    return gather_elements


def _linear(x: torch.Tensor, indices: torch.Tensor, first: int) -> torch.Tensor:
    """Tuples of indices (last axis) into x's dimensions first, first+1, … as one linear index."""
    m = indices.shape[-1]
    dims = x.shape[first:first + m]
    strides = [math.prod(dims[i + 1:]) for i in range(m)]
    idx = _wrap(indices, indices.new_tensor(list(dims), dtype=torch.long))
    return (idx * idx.new_tensor(strides)).sum(-1)


@converter("GatherND")
def _gather_nd(node: Node) -> OpFn:
    b = node.attr("batch_dims", 0)

    def gather_nd(x, indices):
        m = indices.shape[-1]
        batch, rest = math.prod(x.shape[:b]), tuple(x.shape[b + m:])
        flat = x.reshape(batch, math.prod(x.shape[b:b + m]), *rest)
        lin = _linear(x, indices, b).reshape(batch, math.prod(indices.shape[b:-1]))
        rows = torch.arange(batch, device=x.device)[:, None]
        return flat[rows, lin].reshape(tuple(indices.shape[:-1]) + rest)

    return gather_nd


@converter("Scatter", "ScatterElements")
def _scatter_elements(node: Node) -> OpFn:
    axis, reduction = node.attr("axis", 0), _reduction(node)

    def scatter_elements(x, indices, updates):
        a = axis_of(axis, x.dim())
        return _scatter(x, a, _wrap(indices, x.shape[a]), updates, reduction)

    return scatter_elements


@converter("ScatterND")
def _scatter_nd(node: Node) -> OpFn:
    reduction = _reduction(node)

    def scatter_nd(x, indices, updates):
        m = indices.shape[-1]
        rest = tuple(x.shape[m:])
        flat = x.reshape(math.prod(x.shape[:m]), *rest)
        upd = updates.reshape(-1, *rest)
        lin = _linear(x, indices, 0).reshape((-1,) + (1,) * len(rest)).expand_as(upd)
        return _scatter(flat, 0, lin, upd, reduction).reshape(x.shape)

    return scatter_nd


@converter("TensorScatter")
def _tensor_scatter(node: Node) -> OpFn:
    """Writes update into the cache along ``axis`` from each batch row's write index (KV-cache update)."""
    axis, mode = node.attr("axis", -2), node.attr("mode", "linear")
    if mode not in ("linear", "circular"):
        raise node.unsupported(f"mode {mode}")

    def tensor_scatter(cache, update, write_indices=None):
        a = axis_of(axis, cache.dim())
        start = torch.zeros(cache.shape[0], dtype=torch.long, device=cache.device) if write_indices is None \
            else write_indices.long()
        pos = start[:, None] + torch.arange(update.shape[a], device=cache.device)  # (batch, sequence)
        if mode == "circular":
            pos = pos.remainder(cache.shape[a])
        shape = [1] * cache.dim()
        shape[0], shape[a] = pos.shape
        return cache.scatter(a, pos.reshape(shape).expand_as(update), update)

    return tensor_scatter


@converter("OneHot")
def _one_hot(node: Node) -> OpFn:
    axis = node.attr("axis", -1)

    def one_hot(indices, depth, values):
        n = int(scalar(depth))
        a = axis_of(axis, indices.dim() + 1)
        idx = _wrap(indices, n).unsqueeze(a)  # out-of-range indices match no class: all off
        shape = [1] * idx.dim()
        shape[a] = n
        classes = torch.arange(n, device=indices.device).reshape(shape)
        off, on = values.reshape(-1)[0], values.reshape(-1)[1]
        return torch.where(idx == classes, on, off)

    return one_hot


@converter("Compress")
def _compress(node: Node) -> OpFn:
    axis = node.attr("axis")

    def compress(x, condition):
        if axis is None:
            x, a = x.reshape(-1), 0
        else:
            a = axis_of(axis, x.dim())
        keep = torch.nonzero(condition.reshape(-1)[:x.shape[a]]).reshape(-1)  # a short condition drops the rest
        return x.index_select(a, keep)

    return compress


@converter("NonZero")
def _non_zero(node: Node) -> OpFn:
    return lambda x: torch.nonzero(x).T


@converter("Unique")
def _unique(node: Node) -> OpFn:
    axis, is_sorted = node.attr("axis"), node.attr("sorted", 1)

    def unique(x):
        if axis is None:
            x, a = x.reshape(-1), 0
        else:
            a = axis_of(axis, x.dim())
        _, inverse, counts = torch.unique(x, sorted=True, return_inverse=True, return_counts=True, dim=a)
        n = x.shape[a]
        positions = torch.arange(n, device=x.device)
        first = torch.full_like(counts, n).scatter_reduce(0, inverse, positions, "amin")
        if not is_sorted:  # in order of first occurrence
            order = torch.argsort(first)
            first, counts = first[order], counts[order]
            inverse = torch.argsort(order)[inverse]
        return x.index_select(a, first), first, inverse, counts  # values gathered: gradients reach x

    return unique


@converter("ReverseSequence")
def _reverse_sequence(node: Node) -> OpFn:
    batch_axis, time_axis = node.attr("batch_axis", 1), node.attr("time_axis", 0)

    def reverse_sequence(x, lengths):
        t = torch.arange(x.shape[time_axis], device=x.device)[:, None]
        n = lengths.long()[None, :]
        source = torch.where(t < n, n - 1 - t, t)  # (time, batch): the first lengths[b] steps reversed
        if batch_axis < time_axis:
            source = source.T
        shape = [1] * x.dim()
        shape[time_axis], shape[batch_axis] = x.shape[time_axis], x.shape[batch_axis]
        return torch.gather(x, time_axis, source.reshape(shape).expand_as(x))

    return reverse_sequence


@converter("TopK")
def _top_k(node: Node) -> OpFn:
    axis, largest = node.attr("axis", -1), node.attr("largest", 1)

    def top_k(x, k=None):
        k = node.attr("k") if node.opset < 10 else int(scalar(k))
        a = axis_of(axis, x.dim())
        # a stable sort puts equal values in index order: ONNX breaks ties by the lower index
        values, order = torch.sort(x, dim=a, descending=bool(largest), stable=True)
        return values.narrow(a, 0, k), order.narrow(a, 0, k)

    return top_k


def _corners(boxes: torch.Tensor, center: bool):
    """(x1, y1, x2, y2) with x1 <= x2 and y1 <= y2, from [y1, x1, y2, x2] or [x_center, y_center, w, h]."""
    if center:
        xc, yc, w, h = boxes.unbind(-1)
        return xc - w / 2, yc - h / 2, xc + w / 2, yc + h / 2
    ya, xa, yb, xb = boxes.unbind(-1)
    return torch.minimum(xa, xb), torch.minimum(ya, yb), torch.maximum(xa, xb), torch.maximum(ya, yb)


def _suppresses(boxes: torch.Tensor, center: bool, iou_threshold: float) -> torch.Tensor:
    """[batch, N, N]: whether box i and box j overlap by more than the threshold (IoU)."""
    x1, y1, x2, y2 = _corners(boxes, center)
    w = (torch.minimum(x2[..., :, None], x2[..., None, :]) - torch.maximum(x1[..., :, None], x1[..., None, :]))
    h = (torch.minimum(y2[..., :, None], y2[..., None, :]) - torch.maximum(y1[..., :, None], y1[..., None, :]))
    inter = w.clamp(min=0) * h.clamp(min=0)
    area = (x2 - x1) * (y2 - y1)
    union = area[..., :, None] + area[..., None, :] - inter
    valid = (w > 0) & (h > 0) & (area[..., :, None] > 0) & (area[..., None, :] > 0) & (union > 0)
    return valid & (inter / torch.where(valid, union, 1) > iou_threshold)


@converter("NonMaxSuppression")
def _non_max_suppression(node: Node) -> OpFn:
    center = bool(node.attr("center_point_box", 0))

    def non_max_suppression(boxes, scores, max_boxes=None, iou_threshold=None, score_threshold=None):
        limit = int(scalar(max_boxes, 0)) if max_boxes is not None and max_boxes.numel() else 0
        if limit <= 0:
            return torch.zeros((0, 3), dtype=torch.long, device=boxes.device)
        iou = float(scalar(iou_threshold, 0.0)) if iou_threshold is not None and iou_threshold.numel() else 0.0
        # candidates by decreasing score, ties by lower box index: [batch, class, N]
        order = torch.sort(scores, dim=-1, descending=True, stable=True).indices
        ranked = torch.gather(scores, -1, order)
        candidate = torch.ones_like(ranked, dtype=torch.bool)
        if score_threshold is not None and score_threshold.numel():
            candidate = ranked > scalar(score_threshold)
        b, c, n = order.shape
        pairs = _suppresses(boxes, center, iou)  # [batch, N, N]
        rows = torch.arange(b, device=boxes.device)[:, None, None, None]
        ranked_pairs = pairs[rows, order[..., :, None], order[..., None, :]]  # [batch, class, N, N] by rank
        ranked_pairs &= torch.ones(n, n, dtype=torch.bool, device=boxes.device).tril(-1)  # only by higher ranks
        # Greedy NMS: a box is kept when no kept higher-ranked box suppresses it. Iterating to the fixed
        # point settles rank r after at most r + 1 rounds, usually far fewer.
        keep = candidate
        while True:
            new = candidate & ~(ranked_pairs & keep[..., None, :]).any(-1)
            if torch.equal(new, keep):
                break
            keep = new
        keep &= keep.cumsum(-1) <= limit
        batch, cls, rank = torch.nonzero(keep, as_tuple=True)
        return torch.stack([batch, cls, order[batch, cls, rank]], dim=1)

    return non_max_suppression
