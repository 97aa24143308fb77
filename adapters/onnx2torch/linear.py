"""Linear algebra: Gemm, MatMul, MatMulInteger, Einsum, Det."""
from __future__ import annotations

import torch

from .registry import Node, OpFn, converter


def _scaled(t: torch.Tensor, factor: float) -> torch.Tensor:
    """``factor·t`` in t's type (a float factor would turn an integer Gemm into a float one)."""
    return t if factor == 1.0 else (t * factor).to(t.dtype)


@converter("Gemm")
def _gemm(node: Node) -> OpFn:
    # opsets < 7 had a `broadcast` attribute: torch broadcasting covers both of its values
    alpha, beta = float(node.attr("alpha", 1.0)), float(node.attr("beta", 1.0))
    ta, tb = node.attr("transA", 0), node.attr("transB", 0)

    def gemm(a, b, c=None):
        y = _scaled((a.t() if ta else a) @ (b.t() if tb else b), alpha)
        return y if c is None else y + _scaled(c, beta)

    return gemm


@converter("MatMul")
def _matmul(node: Node) -> OpFn:
    return torch.matmul  # numpy semantics, as ONNX: 1-D operands and batch broadcasting


@converter("MatMulInteger")
def _matmul_integer(node: Node) -> OpFn:
    def matmul_integer(a, b, a_zero_point=None, b_zero_point=None):
        a, b = a.double(), b.double()  # exact for 8-bit operands, and CUDA has no integer matmul
        if a_zero_point is not None:  # a scalar, or one per row of A
            zero = a_zero_point.double()
            a = a - (zero.reshape(-1, 1) if zero.numel() > 1 else zero.reshape(()))
        if b_zero_point is not None:  # a scalar, or one per column of B
            b = b - b_zero_point.double()
        return torch.matmul(a, b).to(torch.int32)

    return matmul_integer


@converter("Einsum")
def _einsum(node: Node) -> OpFn:
    equation = node.attr("equation", "").replace(" ", "")  # implicit output: sorted once-used letters, as torch

    def einsum(*operands):
        return torch.einsum(equation, *operands)

    return einsum


@converter("Det")
def _det(node: Node) -> OpFn:
    def det(x):
        if x.dtype in (torch.float16, torch.bfloat16):  # torch's LU has no half kernels
            return torch.linalg.det(x.float()).to(x.dtype)
        return torch.linalg.det(x)

    return det
