"""Convolutions and pooling (1-D, 2-D and 3-D; ONNX is channels-first).

Ops: Conv, ConvTranspose, DeformConv, CausalConvWithState, Col2Im, MaxPool (with Indices), AveragePool, LpPool,
MaxUnpool, GlobalAveragePool, GlobalMaxPool, GlobalLpPool.

Pooling pads the input itself (explicit pads, auto_pad, and ceil_mode's partial last windows) so that every
output window fits exactly, then pools with torch's unpadded, floor-mode kernels: the output sizes are ONNX's
(and onnxruntime's), not torch's, whose ceil_mode rule differs once the pads are asymmetric.
"""
from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F

from .registry import Node, OpFn, converter, ints

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}
_AVG_POOL = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}
_MAX_POOL = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
_SAME = ("SAME_UPPER", "SAME_LOWER")


def spatial_pads(node: Node, x: torch.Tensor, kernel, strides, dilations) -> list[int]:
    """ONNX pads (begins…, ends…) for this input, resolving auto_pad SAME_UPPER/SAME_LOWER."""
    spatial = x.shape[2:]
    auto = node.attr("auto_pad", "NOTSET")
    if auto in _SAME:
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


def _pad(x: torch.Tensor, pads: list[int], value: float = 0.0) -> torch.Tensor:
    """F.pad with ONNX pads; negative pads crop."""
    return F.pad(x, torch_pad(pads), value=value) if any(pads) else x


def _geometry(node: Node, w: torch.Tensor) -> tuple[list[int], list[int], list[int]]:
    """Kernel size, strides and dilations of a convolution with weights ``w``."""
    k = list(w.shape[2:])
    return k, list(node.attr("strides", [1] * len(k))), list(node.attr("dilations", [1] * len(k)))


def _per_channel(b: torch.Tensor, rank: int) -> torch.Tensor:
    """A (C,) bias shaped to broadcast over (N, C, spatial…)."""
    return b.reshape(1, -1, *[1] * (rank - 2))


# ---- convolutions -----------------------------------------------------------------------------------------
@converter("Conv")
def _conv(node: Node) -> OpFn:
    group = node.attr("group", 1)

    def conv(x, w, b=None):
        k, strides, dilations = _geometry(node, w)
        pads = spatial_pads(node, x, k, strides, dilations)
        n = len(k)
        if pads[:n] == pads[n:]:
            return _CONV[n](x, w, b, strides, pads[:n], dilations, group)
        return _CONV[n](_pad(x, pads), w, b, strides, 0, dilations, group)

    return conv


def _deconv_window(node: Node, x: torch.Tensor, k, strides, dilations, out_pad) -> tuple[list[int], list[int]]:
    """Where a transposed convolution's output sits in its full (unpadded) result: the start (pads begin)
    and the size of each spatial axis, from the explicit pads, output_shape (which wins) or auto_pad.

    Generated pads follow the spec (the odd cell at the end for SAME_UPPER, else at the start) and
    onnxruntime: never negative (a larger output_shape fills the end with zeros; SAME then stays at the full
    size)."""
    n = len(k)
    auto = node.attr("auto_pad", "NOTSET")
    shape = node.attr("output_shape")
    full = [s * (i - 1) + o + (kk - 1) * d + 1
            for i, s, o, kk, d in zip(x.shape[2:], strides, out_pad, k, dilations)]
    if shape is None and auto not in _SAME:
        pads = [0] * (2 * n) if auto == "VALID" else list(node.attr("pads", [0] * (2 * n)))
        return pads[:n], [f - b - e for f, b, e in zip(full, pads[:n], pads[n:])]
    target = list(shape)[-n:] if shape is not None else [i * s for i, s in zip(x.shape[2:], strides)]
    totals = [max(f - t, 0) for f, t in zip(full, target)]
    starts = [t // 2 if auto == "SAME_UPPER" else t - t // 2 for t in totals]
    return starts, (target if shape is not None else [f - t for f, t in zip(full, totals)])


@converter("ConvTranspose")
def _conv_transpose(node: Node) -> OpFn:
    group = node.attr("group", 1)

    def deconv(x, w, b=None):
        k, strides, dilations = _geometry(node, w)
        n = len(k)
        out_pad = list(node.attr("output_padding", [0] * n))
        starts, sizes = _deconv_window(node, x, k, strides, dilations, out_pad)
        fn = _CONV_T[n]
        full = [s * (i - 1) + (kk - 1) * d + 1 for i, s, kk, d in zip(x.shape[2:], strides, k, dilations)]
        # torch's own padding: the same pads at both ends, then output_padding below max(stride, dilation)
        extra = [size - f + 2 * p for size, f, p in zip(sizes, full, starts)]
        if min(starts) >= 0 and all(0 <= e < max(s, d) for e, s, d in zip(extra, strides, dilations)):
            return fn(x, w, b, strides, starts, extra, group, dilations)
        y = fn(x, w, None, strides, 0, 0, group, dilations)
        y = _pad(y, [-p for p in starts] + [size - f + p for size, f, p in zip(sizes, full, starts)])
        return y if b is None else y + _per_channel(b, y.dim())

    return deconv


@converter("CausalConvWithState")
def _causal_conv(node: Node) -> OpFn:
    activation = node.attr("activation", "none")
    if activation not in ("none", "silu", "swish"):
        raise node.unsupported(f"activation '{activation}'")

    def causal(x, w, b=None, past=None):
        k = w.shape[-1]
        if past is None:
            past = x.new_zeros(x.shape[0], x.shape[1], k - 1)
        padded = torch.cat([past.to(x.dtype), x], dim=2)
        y = F.conv1d(padded, w, b, groups=x.shape[1])
        if activation != "none":  # the reference applies SiLU in float32 at half precision
            y = F.silu(y.float()).to(x.dtype) if y.element_size() < 4 else F.silu(y)
        # the carry: the last k - 1 positions of past ++ input (all of them from past when the input is short)
        return y, padded[:, :, padded.shape[2] - (k - 1):]

    return causal


@converter("Col2Im")
def _col2im(node: Node) -> OpFn:
    def col2im(x, image_shape, block_shape):
        image, block = ints(image_shape), ints(block_shape)
        n, size = len(image), math.prod(block)
        strides = list(node.attr("strides", [1] * n))
        dilations = list(node.attr("dilations", [1] * n))
        pads = list(node.attr("pads", [0] * (2 * n)))
        blocks = [(i + pads[j] + pads[j + n] - (k - 1) * d - 1) // s + 1
                  for j, (i, k, s, d) in enumerate(zip(image, block, strides, dilations))]
        channels = x.shape[1] // size
        # a grouped transposed convolution with one-hot kernels adds every column entry at its image position
        eye = torch.eye(size, dtype=x.dtype, device=x.device).reshape(size, 1, *block)
        w = eye.repeat(channels, *[1] * (n + 1))
        full = _CONV_T[n](x.reshape(x.shape[0], x.shape[1], *blocks), w, None, strides, 0, 0, channels, dilations)
        ends = [pads[j] + image[j] - full.shape[2 + j] for j in range(n)]
        return _pad(full, [-p for p in pads[:n]] + ends)

    return col2im


def _bilinear(x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """Linear interpolation of ``x`` (N, G, C, *sizes) at pixel positions ``pos`` (N, G, *P, n): (N, G, C, *P);
    corners outside the input count as zero."""
    n = pos.shape[-1]
    sizes = list(x.shape[3:])
    flat_x = x.reshape(*x.shape[:3], -1)
    limit = pos.new_tensor(sizes).long()
    steps = pos.new_tensor([math.prod(sizes[i + 1:]) for i in range(n)]).long()
    lo = pos.floor()
    frac = pos - lo
    lo = lo.long()
    out = 0
    for corner in itertools.product((0, 1), repeat=n):
        c = lo.new_tensor(corner)
        idx = lo + c
        weight = torch.where(c.bool(), frac, 1 - frac).prod(-1)
        inside = ((idx >= 0) & (idx < limit)).all(-1)
        flat = (torch.minimum(idx.clamp(min=0), limit - 1) * steps).sum(-1)
        index = flat.reshape(*flat.shape[:2], 1, -1).expand(-1, -1, x.shape[2], -1)
        vals = flat_x.gather(-1, index)
        out = out + vals * (weight * inside).reshape(*weight.shape[:2], 1, -1)
    return out.reshape(*x.shape[:3], *pos.shape[2:-1])


@converter("DeformConv")
def _deform_conv(node: Node) -> OpFn:
    group = node.attr("group", 1)
    offset_group = node.attr("offset_group", 1)

    def deform(x, w, offset, b=None, mask=None):
        k, strides, dilations = _geometry(node, w)
        n, size = len(k), math.prod(k)
        pads = list(node.attr("pads", [0] * (2 * n)))
        batch, channels, out = x.shape[0], x.shape[1], list(offset.shape[2:])
        dev = x.device
        # sampling positions before the offsets: window origin + dilated kernel tap, (K, *out, n)
        taps = torch.cartesian_prod(*[torch.arange(kk, device=dev) * d for kk, d in zip(k, dilations)])
        origins = torch.stack(torch.meshgrid(*[torch.arange(o, device=dev) * s - p for o, s, p in
                                               zip(out, strides, pads[:n])], indexing="ij"), dim=-1)
        base = taps.reshape(size, *[1] * n, n) + origins
        shifts = offset.reshape(batch, offset_group, size, n, *out).movedim(3, -1)  # (N, G, K, *out, n)
        pos = base.to(offset.dtype) + shifts
        cols = _bilinear(x.reshape(batch, offset_group, channels // offset_group, *x.shape[2:]), pos)
        if mask is not None:
            cols = cols * mask.reshape(batch, offset_group, 1, size, *out)
        cols = cols.reshape(batch, group, channels // group * size, -1)
        y = torch.einsum("bgkl,gok->bgol", cols, w.reshape(group, w.shape[0] // group, -1))
        y = y.reshape(batch, w.shape[0], *out)
        return y if b is None else y + _per_channel(b, y.dim())

    return deform


# ---- pooling ----------------------------------------------------------------------------------------------
def _pool_attrs(node: Node) -> tuple[list[int], list[int], list[int], bool]:
    kernel = list(node.attr("kernel_shape"))
    strides = list(node.attr("strides", [1] * len(kernel)))
    dilations = list(node.attr("dilations", [1] * len(kernel)))
    if len(kernel) not in (1, 2, 3):
        raise node.unsupported(f"{len(kernel)} spatial axes")
    return kernel, strides, dilations, bool(node.attr("ceil_mode", 0))


def _pool_pads(node: Node, x: torch.Tensor, kernel, strides, dilations, ceil: bool) -> tuple[list[int], list[int]]:
    """The pads (begins…, ends…; negative ones crop), and the overhang past the end of the padded input that
    ceil_mode's partial last windows need (negative: where the last window stops short of the end).

    Sizes follow onnxruntime, which agrees with the spec except where the spec is silent or inconsistent:
    SAME pads are sized for the undilated kernel (negative when the kernel is shorter than the stride), and
    ceil_mode applies under auto_pad too."""
    n = len(kernel)
    auto = node.attr("auto_pad", "NOTSET")
    pads = [0] * (2 * n) if auto == "VALID" else list(node.attr("pads", [0] * (2 * n)))
    overhang = []
    for i, (size, k, s, d) in enumerate(zip(x.shape[2:], kernel, strides, dilations)):
        if auto in _SAME:
            total = (-(-size // s) - 1) * s + k - size
            pads[i] = int(total / 2) if auto == "SAME_UPPER" else int((total + 1) / 2)  # C++ division
            pads[i + n] = total - pads[i]
        span = (k - 1) * d + 1
        room = size + pads[i] + pads[i + n] - span
        out = (math.ceil(room / s) if ceil else int(room / s)) + 1
        if ceil and (out - 1) * s >= size + pads[i]:  # a window starting in the end padding is dropped
            out -= 1
        overhang.append((out - 1) * s - room)
    return pads, overhang


def _fit(x: torch.Tensor, pads: list[int], overhang: list[int], fill: float, overhang_fill: float) -> torch.Tensor:
    """``x`` padded so that the output windows tile it exactly (no torch padding, floor mode)."""
    return _pad(_pad(x, pads, fill), [0] * len(overhang) + overhang, overhang_fill)


def _window_mean(x: torch.Tensor, kernel, strides, dilations) -> torch.Tensor:
    """The mean over every (complete, dilated) window of an already padded ``x``."""
    n = len(kernel)
    if all(d == 1 for d in dilations) and not (n == 3 and x.element_size() < 4 and x.device.type == "cpu"):
        return _AVG_POOL[n](x, kernel, strides)  # (torch has no half-precision avg_pool3d on the CPU)
    planes = x.reshape(-1, 1, *x.shape[2:])
    w = x.new_full((1, 1, *kernel), 1 / math.prod(kernel))
    y = _CONV[n](planes, w, None, strides, 0, dilations)
    return y.reshape(*x.shape[:2], *y.shape[2:])


@converter("AveragePool")
def _average_pool(node: Node) -> OpFn:
    kernel, strides, dilations, ceil = _pool_attrs(node)
    include_pad = bool(node.attr("count_include_pad", 0))

    def average_pool(x):
        pads, overhang = _pool_pads(node, x, kernel, strides, dilations, ceil)
        mean = _window_mean(_fit(x, pads, overhang, 0.0, 0.0), kernel, strides, dilations)
        if max(overhang) <= 0 and (include_pad or max(pads) <= 0):
            return mean  # every window counts whole
        # divide by the share of each window that counts: the input, plus the pads if included, never
        # ceil_mode's overhang
        ones = x.new_ones((1, 1, *x.shape[2:]))
        share = _window_mean(_fit(ones, pads, overhang, float(include_pad), 0.0), kernel, strides, dilations)
        return mean / share

    return average_pool


@converter("LpPool")
def _lp_pool(node: Node) -> OpFn:
    kernel, strides, dilations, ceil = _pool_attrs(node)
    p = float(node.attr("p", 2))

    def lp_pool(x):
        pads, overhang = _pool_pads(node, x, kernel, strides, dilations, ceil)
        mean = _window_mean(_fit(x.abs().pow(p), pads, overhang, 0.0, 0.0), kernel, strides, dilations)
        return (mean * math.prod(kernel)).pow(1 / p)

    return lp_pool


def _onnx_indices(idx: torch.Tensor, shape, begins: list[int], padded: list[int], column_major: bool) -> torch.Tensor:
    """torch's indices (per plane, into the padded input) → ONNX's (into the whole unpadded tensor, spatial
    axes row- or column-major)."""
    sizes = list(shape[2:])
    n = len(sizes)
    order = range(n) if column_major else reversed(range(n))
    steps, step = [0] * n, 1
    for i in order:
        steps[i], step = step, step * sizes[i]
    flat, rest = torch.zeros_like(idx), idx
    for i in reversed(range(n)):
        flat = flat + (rest % padded[i] - begins[i]) * steps[i]
        rest = rest // padded[i]
    planes = torch.arange(shape[0] * shape[1], device=idx.device, dtype=idx.dtype).reshape(*shape[:2], *[1] * n)
    return flat + planes * math.prod(sizes)


@converter("MaxPool")
def _max_pool(node: Node) -> OpFn:
    kernel, strides, dilations, ceil = _pool_attrs(node)
    column_major = bool(node.attr("storage_order", 0))
    with_indices = node.outputs > 1
    n = len(kernel)

    def max_pool(x):
        pads, overhang = _pool_pads(node, x, kernel, strides, dilations, ceil)
        source = x if x.is_floating_point() else x.double()  # integer inputs: exact in float64
        padded = _fit(source, pads, overhang, -math.inf, -math.inf)
        pooled = _MAX_POOL[n](padded, kernel, strides, 0, dilations, return_indices=with_indices)
        if not with_indices:
            return pooled.to(x.dtype)
        y, idx = pooled
        return y.to(x.dtype), _onnx_indices(idx, x.shape, pads[:n], list(padded.shape[2:]), column_major)

    return max_pool


@converter("MaxUnpool")
def _max_unpool(node: Node) -> OpFn:
    kernel = list(node.attr("kernel_shape"))
    n = len(kernel)
    strides = list(node.attr("strides", [1] * n))
    pads = list(node.attr("pads", [0] * (2 * n)))

    def max_unpool(x, indices, output_shape=None):
        """Scatter into zeros; the indices address the whole output tensor, as in onnxruntime (so they index
        output_shape when it is given: the ONNX reference instead indexes the inferred shape, then pads)."""
        if output_shape is not None:
            shape = ints(output_shape)
        else:
            shape = list(x.shape[:2]) + [(i - 1) * s - pads[j] - pads[j + n] + k
                                         for j, (i, s, k) in enumerate(zip(x.shape[2:], strides, kernel))]
        idx = indices.reshape(-1).long()
        # overlapping windows repeat an index: the last value written wins (as in onnxruntime), and only it
        # gets a gradient
        order = torch.arange(idx.numel(), device=idx.device)
        last = torch.full((math.prod(shape),), -1, dtype=torch.long, device=idx.device)
        last = last.scatter_reduce(0, idx, order, "amax")
        src = x.reshape(-1) * (last[idx] == order).to(x.dtype)
        return x.new_zeros(math.prod(shape)).scatter_add(0, idx, src).reshape(shape)

    return max_unpool


@converter("GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool")
def _global_pool(node: Node) -> OpFn:
    def dims(x):
        return tuple(range(2, x.dim()))

    if node.op == "GlobalAveragePool":
        return lambda x: x.mean(dim=dims(x), keepdim=True)
    if node.op == "GlobalMaxPool":
        return lambda x: x.amax(dim=dims(x), keepdim=True)
    p = float(node.attr("p", 2))
    return lambda x: torch.linalg.vector_norm(x, ord=p, dim=dims(x), keepdim=True)
