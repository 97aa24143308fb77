"""Normalization layers: BatchNormalization, InstanceNormalization, LayerNormalization, GroupNormalization,
RMSNormalization, LRN, LpNormalization, MeanVarianceNormalization."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .registry import Node, OpFn, axis_of, converter, torch_dtype


def _stash_dtype(node: Node) -> torch.dtype:
    """The precision ONNX asks the statistics to be computed in (stash_type, float32 by default)."""
    return torch_dtype(node, node.attr("stash_type", 1))


def _compute_dtype(x: torch.Tensor, stash: torch.dtype) -> torch.dtype:
    """stash_type raises the precision of the statistics (float16 → float32) but never lowers it: a float64
    module (gradcheck) stays float64."""
    return torch.promote_types(x.dtype, stash)


def _exactly(shape, x: torch.Tensor, *params) -> bool:
    """Whether the parameters can go to torch's fused affine step: the normalized shape and x's dtype."""
    return all(p is None or (p.shape == shape and p.dtype == x.dtype) for p in params)


# ---- BatchNormalization -----------------------------------------------------------------------------------
@converter("BatchNormalization")
def _batch_norm(node: Node) -> OpFn:
    eps = float(node.attr("epsilon", 1e-5))
    momentum = float(node.attr("momentum", 0.9))
    spatial = bool(node.attr("spatial", 1)) if node.opset < 9 else True
    if node.opset >= 14:
        training = bool(node.attr("training_mode", 0))
        if not training and node.outputs > 1:
            raise node.unsupported("running-statistics outputs without training_mode=1")
    else:  # before opset 14 the outputs asked tell the mode: Y alone is test mode
        training = node.outputs > 1 and not node.attr("is_test", 0)

    def run(x, scale, bias, mean, var):
        if not training:
            return _bn_inference(x, scale, bias, mean, var, eps)
        return _bn_training(x, scale, bias, mean, var, eps, momentum)[:node.outputs]

    def bn(x, scale, bias, mean, var):
        if spatial:
            return run(x, scale, bias, mean, var)
        # opset < 9, spatial=0: parameters and statistics per feature (C×D1×…×Dn), i.e. over the batch only
        outputs = run(x.flatten(1), scale.flatten(), bias.flatten(), mean.flatten(), var.flatten())
        if not training:
            return outputs.reshape(x.shape)
        return (outputs[0].reshape(x.shape),) + tuple(o.reshape(mean.shape) for o in outputs[1:])

    return bn


def _bn_inference(x, scale, bias, mean, var, eps):
    # opset 15 lets scale/bias and mean/var have other float types than X: compute in the widest, return X's
    dtype = torch.promote_types(torch.promote_types(x.dtype, scale.dtype), mean.dtype)
    y = F.batch_norm(x.to(dtype), mean.to(dtype), var.to(dtype), scale.to(dtype), bias.to(dtype), eps=eps)
    return y.to(x.dtype)


def _bn_training(x, scale, bias, mean, var, eps, momentum):
    """(Y, running_mean, running_var, batch mean, batch variance): Y normalized with the batch statistics, the
    population variance (not torch's unbiased one) in the running variance, statistics in at least float32."""
    dtype = torch.promote_types(torch.promote_types(x.dtype, scale.dtype), torch.float32)
    xs = x.to(dtype)
    y = F.batch_norm(xs, None, None, scale.to(dtype), bias.to(dtype), training=True, eps=eps).to(x.dtype)
    batch_var, batch_mean = torch.var_mean(xs, [0] + list(range(2, x.dim())), correction=0)
    running_mean = mean * momentum + batch_mean.to(mean.dtype) * (1 - momentum)
    running_var = var * momentum + batch_var.to(var.dtype) * (1 - momentum)
    return y, running_mean, running_var, batch_mean.to(mean.dtype), batch_var.to(var.dtype)


# ---- per-sample normalizations ----------------------------------------------------------------------------
@converter("InstanceNormalization")
def _instance_norm(node: Node) -> OpFn:
    eps = float(node.attr("epsilon", 1e-5))

    def instance_norm(x, scale, bias):
        # group norm with one channel per group; unlike F.instance_norm it accepts a single spatial element
        return F.group_norm(x, x.shape[1], scale, bias, eps)

    return instance_norm


@converter("GroupNormalization")
def _group_norm(node: Node) -> OpFn:
    groups = int(node.attr("num_groups"))
    eps = float(node.attr("epsilon", 1e-5))
    stash = _stash_dtype(node)
    per_group = node.opset < 21  # opset 18: scale and bias per group; from 21: per channel

    def group_norm(x, scale, bias):
        channels = x.shape[1]
        if per_group:
            scale, bias = (p.repeat_interleave(channels // groups) for p in (scale, bias))
        dtype = _compute_dtype(x, stash)
        if dtype == x.dtype and _exactly((channels,), x, scale, bias):
            return F.group_norm(x, groups, scale, bias, eps)
        y = F.group_norm(x.to(dtype), groups, eps=eps).to(x.dtype)  # scale and shift in X's type, as ONNX does
        view = [channels] + [1] * (x.dim() - 2)
        return y * scale.reshape(view) + bias.reshape(view)

    return group_norm


@converter("LayerNormalization")
def _layer_norm(node: Node) -> OpFn:
    axis = int(node.attr("axis", -1))
    eps = float(node.attr("epsilon", 1e-5))
    stash = _stash_dtype(node)
    stats = node.outputs > 1  # Mean and InvStdDev asked

    def layer_norm(x, scale, bias=None):
        start = axis_of(axis, x.dim())
        shape = x.shape[start:]
        dtype = _compute_dtype(x, stash)
        if stats:
            xs = x.to(dtype)
            var, mean = torch.var_mean(xs, list(range(start, x.dim())), correction=0, keepdim=True)
            inv_std = torch.rsqrt(var + eps)  # Mean and InvStdDev stay in the stash type (ONNX's U)
            y = ((xs - mean) * inv_std).to(x.dtype) * scale
            return (y if bias is None else y + bias), mean, inv_std
        if dtype == x.dtype and _exactly(shape, x, scale, bias):
            return F.layer_norm(x, shape, scale, bias, eps)
        # Scale and B broadcast to X (unidirectionally): the affine step outside the fused op
        y = F.layer_norm(x.to(dtype), shape, eps=eps).to(x.dtype) * scale
        return y if bias is None else y + bias

    return layer_norm


@converter("RMSNormalization")
def _rms_norm(node: Node) -> OpFn:
    axis = int(node.attr("axis", -1))
    eps = float(node.attr("epsilon", 1e-5))
    stash = _stash_dtype(node)

    def rms_norm(x, scale):
        shape = x.shape[axis_of(axis, x.dim()):]
        dtype = _compute_dtype(x, stash)
        if dtype == x.dtype and _exactly(shape, x, scale):
            return F.rms_norm(x, shape, scale, eps)
        return F.rms_norm(x.to(dtype), shape, eps=eps).to(x.dtype) * scale

    return rms_norm


@converter("MeanVarianceNormalization")
def _mean_variance_norm(node: Node) -> OpFn:
    axes = [int(a) for a in node.attr("axes", [0, 2, 3])]

    def mvn(x):
        dims = sorted({axis_of(a, x.dim()) for a in axes})
        var, mean = torch.var_mean(x, dims, correction=0, keepdim=True)
        return (x - mean) / (var.sqrt() + 1e-9)  # ONNX adds its epsilon to the standard deviation

    return mvn


# ---- across-channel and Lp normalizations -----------------------------------------------------------------
@converter("LRN")
def _lrn(node: Node) -> OpFn:
    size = int(node.attr("size"))
    alpha = float(node.attr("alpha", 1e-4))
    beta = float(node.attr("beta", 0.75))
    bias = float(node.attr("bias", 1.0))
    if size < 1:
        raise node.unsupported(f"size={size}")

    def lrn(x):
        # The window over channels c-⌊(size-1)/2⌋ … c+⌈(size-1)/2⌉: for an even size F.local_response_norm
        # puts the extra channel before c, ONNX after it (and it has no float16 kernel on CPU).
        n, c = x.shape[:2]
        squares = (x * x).reshape(n, 1, c, -1)
        squares = F.pad(squares, (0, 0, (size - 1) // 2, size // 2))
        mean = F.avg_pool2d(squares, (size, 1), stride=1).reshape(x.shape)  # alpha/size · sum = alpha · mean
        return x / (bias + alpha * mean) ** beta

    return lrn


@converter("LpNormalization")
def _lp_norm(node: Node) -> OpFn:
    axis = int(node.attr("axis", -1))
    p = int(node.attr("p", 2))
    if p not in (1, 2):
        raise node.unsupported(f"p={p} (ONNX defines 1 and 2)")

    def lp_norm(x):
        norm = torch.linalg.vector_norm(x, p, dim=axis, keepdim=True)
        return x / norm.masked_fill(norm == 0, 1)  # a zero vector stays zero

    return lp_norm
