"""Resampling: Resize, Upsample, GridSample, AffineGrid, RoiAlign.

Resize and Upsample are separable: every resized axis is resampled on its own. From ONNX's coordinate formulas
(in float64, once per input shape and scales/sizes/roi values, constants in practice) each axis gets either the
nearest input index of every output position, or the taps of the linear/cubic kernel gathered into an
interpolation matrix (out, in) that the axis is contracted with. One path thus covers every mode,
``exclude_outside``, ``antialias`` and ``tf_crop_and_resize``'s extrapolation, and the data only goes through
indexing and matrix products: exact to float rounding, and differentiable.
GridSample and RoiAlign gather the interpolation taps of every sample point in one indexing op.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .registry import Node, axis_of, converter, floats, ints

_HALF = (torch.float16, torch.bfloat16)


def _work_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype interpolation runs in: float32 for half types (their sums lose too much), float64 for
    integers (rounded back at the end), else the input's own."""
    if dtype in _HALF:
        return torch.float32
    return dtype if dtype.is_floating_point else torch.float64


def _back_to(y: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``y`` in ``dtype``; integers are rounded and saturated like ONNX's reference does."""
    if y.dtype == dtype:
        return y
    if not dtype.is_floating_point and dtype != torch.bool:
        info = torch.iinfo(dtype)
        y = y.round().clamp(info.min, info.max)
    return y.to(dtype)


def _cubic_kernel(d: torch.Tensor, a: float) -> torch.Tensor:
    """Keys' cubic convolution kernel with coefficient ``a`` (zero beyond |d| = 2)."""
    d = d.abs()
    inner = ((a + 2) * d - (a + 3)) * d * d + 1
    outer = ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
    return torch.where(d <= 1, inner, torch.where(d < 2, outer, torch.zeros_like(d)))


# ---- Resize / Upsample ------------------------------------------------------------------------------------
_COORD_MODES = ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric",
                "tf_crop_and_resize", "tf_half_pixel_for_nn")
_NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")


@dataclass(frozen=True)
class _ResizeSpec:
    mode: str  # nearest | linear | cubic
    coord: str  # coordinate_transformation_mode
    nearest: str  # nearest_mode, or "legacy" (Upsample and Resize-10)
    cubic_a: float
    exclude_outside: bool
    antialias: bool
    extrapolation: float
    axes: tuple[int, ...] | None
    policy: str  # keep_aspect_ratio_policy


@dataclass(frozen=True)
class _AxisPlan:
    """How one axis is resampled: nearest picks ``x[index]``; linear and cubic contract the axis with the
    interpolation matrix ``matrix`` (out, in); outputs flagged in ``outside`` take the extrapolation value."""

    axis: int
    index: torch.Tensor | None  # (out,) int64
    matrix: torch.Tensor | None  # (out, in)
    outside: torch.Tensor | None  # (out,) bool

    def to(self, device: torch.device, dtype: torch.dtype) -> _AxisPlan:
        def move(t, dt=None):
            return None if t is None else t.to(device, dt)

        return _AxisPlan(self.axis, move(self.index), move(self.matrix, dtype), move(self.outside))


def _resize_spec(node: Node) -> _ResizeSpec:
    legacy = node.op == "Upsample" or node.opset < 11
    mode = str(node.attr("mode", "nearest")).lower()
    if legacy and mode in ("bilinear", "trilinear"):
        mode = "linear"
    if mode not in (("nearest", "linear") if legacy else ("nearest", "linear", "cubic")):
        raise node.unsupported(f"mode '{mode}'")
    if legacy:
        # Upsample and Resize-10 predate coordinate_transformation_mode: x_original = x_resized / scale, and
        # the nearest pixel is found as onnxruntime does (floor when upsampling, ceil when downsampling).
        return _ResizeSpec(mode, "asymmetric", "legacy", -0.75, False, False, 0.0, None, "stretch")
    coord = node.attr("coordinate_transformation_mode", "half_pixel")
    if coord not in _COORD_MODES or (coord == "tf_half_pixel_for_nn" and node.opset > 11):
        raise node.unsupported(f"coordinate_transformation_mode '{coord}'")
    nearest = node.attr("nearest_mode", "round_prefer_floor")
    if nearest not in _NEAREST_MODES:
        raise node.unsupported(f"nearest_mode '{nearest}'")
    policy = node.attr("keep_aspect_ratio_policy", "stretch")
    if policy not in ("stretch", "not_larger", "not_smaller"):
        raise node.unsupported(f"keep_aspect_ratio_policy '{policy}'")
    axes = node.attr("axes")
    return _ResizeSpec(mode, coord, nearest, float(node.attr("cubic_coeff_a", -0.75)),
                       bool(node.attr("exclude_outside", 0)), bool(node.attr("antialias", 0)),
                       float(node.attr("extrapolation_value", 0.0)), tuple(int(a) for a in axes) if axes else None,
                       policy)


def _output_geometry(spec: _ResizeSpec, shape: tuple[int, ...], scales: list[float], sizes: list[int],
                     node: Node) -> tuple[list[int], list[float], list[int]]:
    """The resized axes, their scales and their integer output lengths (the reference's arithmetic)."""
    rank = len(shape)
    axes = [axis_of(a, rank) for a in spec.axes] if spec.axes is not None else list(range(rank))
    if sizes:
        if len(sizes) != len(axes):
            raise node.unsupported(f"{len(sizes)} sizes for {len(axes)} axes")
        scale = [s / shape[a] for s, a in zip(sizes, axes)]
        if spec.policy == "stretch":
            return axes, scale, list(sizes)
        keep = min(scale) if spec.policy == "not_larger" else max(scale)
        return axes, [keep] * len(axes), [int(keep * shape[a] + 0.5) for a in axes]  # round half up
    if len(scales) != len(axes):
        raise node.unsupported(f"{len(scales)} scales for {len(axes)} axes (give scales or sizes)")
    return axes, scales, [int(s * shape[a]) for s, a in zip(scales, axes)]


def _source_coords(spec: _ResizeSpec, length: int, scale: float, out: int, roi: tuple[float, float]):
    """x_original of every output position along one axis (float64), and which fall outside the input
    (tf_crop_and_resize only, else None). ``out_width`` is the fractional target length scale·length."""
    y = torch.arange(out, dtype=torch.float64)
    out_width = scale * length
    coord, outside = spec.coord, None
    if coord == "asymmetric":
        x = y / scale
    elif coord == "half_pixel":
        x = (y + 0.5) / scale - 0.5
    elif coord == "tf_half_pixel_for_nn":
        x = (y + 0.5) / scale
    elif coord == "pytorch_half_pixel":
        x = (y + 0.5) / scale - 0.5 if out > 1 else torch.zeros_like(y)
    elif coord == "half_pixel_symmetric":
        offset = length / 2 * (1 - out / out_width)  # keeps the centre when out_width is not an integer
        x = offset + (y + 0.5) / scale - 0.5
    elif coord == "align_corners":
        x = y * (length - 1) / (out_width - 1) if out > 1 else torch.zeros_like(y)
    else:  # tf_crop_and_resize
        start, end = roi
        if out > 1:
            x = y * (end - start) * (length - 1) / (out_width - 1) + start * (length - 1)
        else:
            x = torch.full_like(y, (start + end) * (length - 1) / 2)
        outside = (x < 0) | (x > length - 1)
    return x, outside


def _nearest_index(spec: _ResizeSpec, x: torch.Tensor, scale: float) -> torch.Tensor:
    """The input index nearest to each x_original, ties resolved by nearest_mode."""
    if spec.nearest == "legacy":
        rounded = x.ceil() if scale < 1 else x.floor()
    elif spec.nearest == "floor":
        rounded = x.floor()
    elif spec.nearest == "ceil":
        rounded = x.ceil()
    else:
        frac = x - x.floor()
        up = frac > 0.5 if spec.nearest == "round_prefer_floor" else frac >= 0.5
        rounded = torch.where(up, x.ceil(), x.floor())
    return rounded.long()


def _kernel_taps(spec: _ResizeSpec, x: torch.Tensor, scale: float, length: int):
    """Tap indices (out, taps) and weights (out, taps) of the linear/cubic kernel at each x_original.

    Taps are counted from ``base``, the pixel strictly left of x (an integer x is the right tap, as in the
    reference); antialias stretches the kernel by 1/scale when downsampling and renormalises the weights."""
    radius = 1 if spec.mode == "linear" else 2
    stretch = min(scale, 1.0) if spec.antialias else 1.0
    first = math.floor(-radius / stretch) + 1
    offsets = torch.arange(first, 2 - first, dtype=torch.float64)
    base = x.ceil() - 1
    dist = (offsets[None, :] - (x - base)[:, None]) * stretch
    if spec.mode == "linear":
        weight = (1 - dist.abs()).clamp(0, 1)
    else:
        weight = _cubic_kernel(dist, spec.cubic_a)
    if spec.antialias:
        weight = weight / weight.sum(-1, keepdim=True)
    index = base.long()[:, None] + offsets.long()[None, :]
    if spec.exclude_outside:
        weight = torch.where((index < 0) | (index >= length), 0.0, weight)
        total = weight.sum(-1, keepdim=True)
        weight = weight / torch.where(total == 0, 1.0, total)
    return index.clamp(0, length - 1), weight  # clamping = the reference's edge padding


def _resize_plan(spec: _ResizeSpec, shape: tuple[int, ...], roi: list[float], scales: list[float],
                 sizes: list[int], node: Node) -> list[_AxisPlan]:
    axes, scale_of, out_of = _output_geometry(spec, shape, scales, sizes, node)
    crop = spec.coord == "tf_crop_and_resize"
    if crop and len(roi) != 2 * len(axes):
        raise node.unsupported(f"tf_crop_and_resize with {len(roi)} roi values for {len(axes)} axes")
    plans = []
    for i, (axis, scale, out) in enumerate(zip(axes, scale_of, out_of)):  # axes are resampled one by one
        length = shape[axis]
        box = (roi[i], roi[i + len(axes)]) if crop else (0.0, 1.0)
        if out == length and math.isclose(scale, 1.0) and box == (0.0, 1.0):
            continue  # identity along this axis (the reference skips it too)
        if scale <= 0 or length == 0:
            raise node.unsupported(f"resizing an axis of length {length} by scale {scale}")
        x, outside = _source_coords(spec, length, scale, out, box)
        outside = outside if outside is not None and outside.any() else None
        if spec.mode == "nearest":
            plans.append(_AxisPlan(axis, _nearest_index(spec, x, scale).clamp(0, length - 1), None, outside))
        else:
            index, weight = _kernel_taps(spec, x, scale, length)
            matrix = torch.zeros(out, length, dtype=torch.float64).scatter_add_(1, index, weight)
            plans.append(_AxisPlan(axis, None, matrix, outside))
    return plans


def _resample_axis(x: torch.Tensor, plan: _AxisPlan, fill: float) -> torch.Tensor:
    # a dense matrix beats gathering the few taps on CPU and GPU at feature-map sizes (and its backward
    # is deterministic); advanced indexing is much faster than index_select for nearest
    if plan.matrix is None:
        y = x[(slice(None),) * plan.axis + (plan.index,)]
    else:
        y = torch.tensordot(x, plan.matrix, dims=([plan.axis], [1])).movedim(-1, plan.axis)
    if plan.outside is not None:
        shape = [1] * x.dim()
        shape[plan.axis] = -1
        y = torch.where(plan.outside.view(shape), fill, y)
    return y


def _values(t: torch.Tensor | None, kind) -> tuple:
    return tuple(kind(t)) if t is not None and t.numel() else ()


@converter("Resize", "Upsample")
def _resize(node: Node):
    spec = _resize_spec(node)
    cache: dict[tuple, list[_AxisPlan]] = {}

    def run(x: torch.Tensor, roi=None, scales=None, sizes=None) -> torch.Tensor:
        key = (tuple(x.shape), x.device, x.dtype, _values(roi, floats), _values(scales, floats),
               _values(sizes, ints))
        plans = cache.get(key)
        if plans is None:
            plans = _resize_plan(spec, tuple(x.shape), *key[3:], node)
            plans = [p.to(x.device, _work_dtype(x.dtype)) for p in plans]
            if len(cache) > 16:
                cache.clear()
            cache[key] = plans
        y = x if spec.mode == "nearest" else x.to(_work_dtype(x.dtype))
        for plan in plans:
            y = _resample_axis(y, plan, spec.extrapolation)
        return _back_to(y, x.dtype)

    if node.op == "Upsample" and node.opset < 9:
        fixed = torch.tensor(floats(node.attr("scales", [])), dtype=torch.float32)
        return lambda x: run(x, scales=fixed)
    if node.op == "Upsample" or node.opset < 11:
        return lambda x, scales: run(x, scales=scales)
    return run


# ---- GridSample / AffineGrid ------------------------------------------------------------------------------
def _reflect(x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """Reflect coordinates outside [lo, hi] back by the nearer border, repeatedly (ONNX's GridSample)."""
    span = hi - lo
    if span <= 0:
        return torch.full_like(x, lo)
    below = x < lo
    dist = torch.where(below, lo - x, x - hi)
    turns = torch.div(dist, span, rounding_mode="trunc")
    rest = dist - turns * span
    even = turns.remainder(2) == 0
    from_lo, from_hi = lo + rest, hi - rest
    inside = (x >= lo) & (x <= hi)
    return torch.where(inside, x, torch.where(below == even, from_lo, from_hi))


def _grid_taps(coord: torch.Tensor, size: int, mode: str, padding: str, align: bool):
    """Tap indices, weights and validity (each (..., taps)) along one spatial axis of GridSample."""
    lo, hi = (0.0, size - 1.0) if align else (-0.5, size - 0.5)
    if mode == "nearest":
        coord = coord.round()  # half to even, like PyTorch and the reference's rint
    if padding == "border" and mode != "cubic":  # cubic clamps each tap instead, as PyTorch and onnxruntime do
        coord = torch.where((coord < lo) | (coord > hi), coord.clamp(0, size - 1), coord)
    elif padding == "reflection":
        coord = _reflect(coord, lo, hi)
    if mode == "nearest":
        index, weight = coord.trunc()[..., None], None
    else:
        base = coord.floor()
        t = (coord - base)[..., None]
        if mode == "linear":
            index = base[..., None] + coord.new_tensor([0.0, 1.0])
            weight = torch.cat([1 - t, t], -1)
        else:
            index = base[..., None] + coord.new_tensor([-1.0, 0.0, 1.0, 2.0])
            weight = _cubic_kernel(torch.cat([t + 1, t, 1 - t, 2 - t], -1), -0.75)
    if padding == "zeros":
        valid = (index >= 0) & (index <= size - 1)
    else:
        index = _reflect(index, lo, hi).trunc() if padding == "reflection" else index
        valid = torch.ones_like(index, dtype=torch.bool)
    return index.clamp(0, size - 1).long(), weight, valid


def _outer(a: torch.Tensor, b: torch.Tensor, op) -> torch.Tensor:
    """Every pair of the taps of ``a`` (..., m) and ``b`` (..., n) combined by ``op``: (..., m·n)."""
    return op(a[..., :, None], b[..., None, :]).flatten(-2)


def _grid_sample(x: torch.Tensor, grid: torch.Tensor, mode: str, padding: str, align: bool) -> torch.Tensor:
    n, c, *dims = x.shape
    rank = len(dims)
    if grid.shape[-1] != rank or grid.shape[0] != n:
        raise ValueError(f"GridSample: grid of shape {tuple(grid.shape)} for input of shape {tuple(x.shape)}")
    work = _work_dtype(x.dtype)
    points = grid.to(work).reshape(n, -1, rank)  # (N, Q, rank), the last component indexes the last axis
    index = torch.zeros(n, points.shape[1], 1, dtype=torch.long, device=x.device)
    weight, valid = None, torch.ones_like(index, dtype=torch.bool)
    for axis, size in enumerate(dims):  # combine the taps of every spatial axis, row-major
        u = points[..., rank - 1 - axis]
        coord = (u + 1) / 2 * (size - 1) if align else ((u + 1) * size - 1) / 2
        idx, w, ok = _grid_taps(coord, size, mode, padding, align)
        index = _outer(index, idx, lambda a, b: a * size + b)
        valid = _outer(valid, ok, torch.logical_and)
        weight = w if weight is None else _outer(weight, w, torch.mul)
    taps = index.shape[-1]
    flat = x.to(work).reshape(n, c, -1)
    gathered = flat.gather(2, index.reshape(n, 1, -1).expand(n, c, -1)).reshape(n, c, -1, taps)
    gathered = torch.where(valid[:, None], gathered, 0.0)
    y = gathered[..., 0] if weight is None else (gathered * weight[:, None]).sum(-1)
    return _back_to(y.reshape(n, c, *grid.shape[1:-1]), x.dtype)


@converter("GridSample")
def _grid_sample_op(node: Node):
    mode = {"bilinear": "linear", "bicubic": "cubic"}.get(node.attr("mode", "bilinear"), node.attr("mode"))
    padding = node.attr("padding_mode", "zeros")
    if mode not in ("nearest", "linear", "cubic"):
        raise node.unsupported(f"mode '{mode}'")
    if padding not in ("zeros", "border", "reflection"):
        raise node.unsupported(f"padding_mode '{padding}'")
    align = bool(node.attr("align_corners", 0))
    return lambda x, grid: _grid_sample(x, grid, mode, padding, align)


def _base_coords(size: int, align: bool, like: torch.Tensor) -> torch.Tensor:
    """Normalised positions of the ``size`` pixel centres in [-1, 1] (pixel edges at ±1 unless align)."""
    if align:
        return torch.linspace(-1, 1, size, dtype=like.dtype, device=like.device)
    return (torch.arange(size, dtype=like.dtype, device=like.device) * 2 + 1) / size - 1


@converter("AffineGrid")
def _affine_grid(node: Node):
    align = bool(node.attr("align_corners", 0))

    def fn(theta: torch.Tensor, size: torch.Tensor) -> torch.Tensor:
        n, _, *dims = ints(size)
        rank = len(dims)
        if rank not in (2, 3) or tuple(theta.shape) != (n, rank, rank + 1):
            raise ValueError(f"AffineGrid: theta of shape {tuple(theta.shape)} for size {[n, _, *dims]}")
        mesh = torch.meshgrid(*[_base_coords(d, align, theta) for d in dims], indexing="ij")
        homogeneous = torch.stack([*reversed(mesh), torch.ones_like(mesh[0])], -1)  # (x, y[, z], 1)
        grid = homogeneous.reshape(-1, rank + 1) @ theta.transpose(1, 2)  # (N, positions, rank)
        return grid.reshape(n, *dims, rank)

    return fn


# ---- RoiAlign ---------------------------------------------------------------------------------------------
def _roi_axis(start, bin_size, count, pooled: int, samples: int, length: int):
    """Bilinear taps along one axis of every sample point of every bin: indices and weights of shape
    (R, pooled, samples, 2), and whether the point is inside the feature map (R, pooled, samples)."""
    p = torch.arange(pooled, dtype=start.dtype, device=start.device)[None, :, None]
    i = torch.arange(samples, dtype=start.dtype, device=start.device)[None, None, :]
    start, bin_size, count = start[:, None, None], bin_size[:, None, None], count[:, None, None]
    pos = start + p * bin_size + (i + 0.5) * bin_size / count.clamp(min=1)
    inside = (pos >= -1.0) & (pos <= length) & (i < count)
    pos = pos.clamp(min=0)
    low = pos.floor()
    at_end = low >= length - 1
    low = torch.where(at_end, float(length - 1), low)
    pos = torch.where(at_end, low, pos)
    frac = (pos - low)[..., None]
    index = torch.stack([low, torch.where(at_end, low, low + 1)], -1).long()
    return index, torch.cat([1 - frac, frac], -1), inside


def _roi_align(x, rois, batch, mode: str, out_h: int, out_w: int, sampling: int, scale: float, half_pixel: bool):
    n, c, h, w = x.shape
    work = _work_dtype(x.dtype)
    rois = rois.to(work)
    offset = 0.5 if half_pixel else 0.0
    start = rois[:, :2] * scale - offset  # (R, [x, y])
    extent = rois[:, 2:] * scale - offset - start
    if not half_pixel:
        extent = extent.clamp(min=1.0)  # malformed boxes become 1×1
    pooled = extent.new_tensor([out_w, out_h])
    bins = extent / pooled
    counts = torch.full_like(extent, sampling) if sampling > 0 else bins.ceil()
    most = [max(int(m), 0) for m in counts.amax(0).tolist()] if len(rois) else [0, 0]
    ix, wx, in_x = _roi_axis(start[:, 0], bins[:, 0], counts[:, 0], out_w, most[0], w)
    iy, wy, in_y = _roi_axis(start[:, 1], bins[:, 1], counts[:, 1], out_h, most[1], h)
    # axes: (R, out_h, out_w, samples_y, samples_x, corner_y, corner_x)
    inside = in_y[:, :, None, :, None] & in_x[:, None, :, None, :]
    weight = wy[:, :, None, :, None, :, None] * wx[:, None, :, None, :, None, :]
    weight = torch.where(inside[..., None, None], weight, 0.0)
    flat = (batch.long()[:, None, None, None, None, None, None] * h + iy[:, :, None, :, None, :, None]) * w \
        + ix[:, None, :, None, :, None, :]
    values = x.to(work).permute(0, 2, 3, 1).reshape(n * h * w, c)[flat] * weight[..., None]
    if mode == "avg":
        y = values.sum((3, 4, 5, 6)) / (counts[:, 0] * counts[:, 1]).clamp(min=1)[:, None, None, None]
    else:  # the max over sample points of the largest weighted corner, as ONNX defines it
        best = values.amax((5, 6))
        real = (torch.arange(most[1], device=x.device)[:, None] < counts[:, 1, None, None]) \
            & (torch.arange(most[0], device=x.device)[None, :] < counts[:, 0, None, None])
        best = torch.where(real[:, None, None, :, :, None], best, -torch.inf)
        y = best.amax((3, 4)) if most[0] and most[1] else best.new_zeros(best.shape[:3] + best.shape[5:])
        y = torch.where(real.flatten(1).any(1)[:, None, None, None], y, 0.0)
    return _back_to(y.permute(0, 3, 1, 2), x.dtype)


@converter("RoiAlign")
def _roi_align_op(node: Node):
    mode = node.attr("mode", "avg")
    if mode not in ("avg", "max"):
        raise node.unsupported(f"mode '{mode}'")
    coord = node.attr("coordinate_transformation_mode", "half_pixel" if node.opset >= 16 else "output_half_pixel")
    if coord not in ("half_pixel", "output_half_pixel"):
        raise node.unsupported(f"coordinate_transformation_mode '{coord}'")
    args = (mode, int(node.attr("output_height", 1)), int(node.attr("output_width", 1)),
            int(node.attr("sampling_ratio", 0)), float(node.attr("spatial_scale", 1.0)), coord == "half_pixel")
    return lambda x, rois, batch_indices: _roi_align(x, rois, batch_indices, *args)
