"""Normalization layers."""
from __future__ import annotations

import torch

from .registry import Node, OpFn, converter


@converter("BatchNormalization")
def _batch_norm(node: Node) -> OpFn:
    eps = node.attr("epsilon", 1e-5)

    def bn(x, scale, bias, mean, var, *_):
        view = [1, -1] + [1] * (x.dim() - 2)
        return (x - mean.reshape(view)) / torch.sqrt(var.reshape(view) + eps) * scale.reshape(view) + bias.reshape(view)

    return bn
