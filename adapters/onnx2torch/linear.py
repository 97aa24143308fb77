"""Matrix products: Gemm, MatMul."""
from __future__ import annotations

import torch

from .registry import Node, OpFn, converter


@converter("Gemm")
def _gemm(node: Node) -> OpFn:
    alpha, beta = node.attr("alpha", 1.0), node.attr("beta", 1.0)
    ta, tb = node.attr("transA", 0), node.attr("transB", 0)

    def gemm(a, b, c=None):
        y = alpha * ((a.t() if ta else a) @ (b.t() if tb else b))
        return y if c is None else y + beta * c

    return gemm


@converter("MatMul")
def _matmul(node: Node) -> OpFn:
    return torch.matmul
