"""Elementwise ops: unary math, binary arithmetic with broadcasting, comparisons, logic and bit ops, Cast.

Ops: Abs Acos Acosh Add And Asin Asinh Atan Atanh BitCast BitShift BitwiseAnd BitwiseNot BitwiseOr BitwiseXor
Cast CastLike Ceil Clip Cos Cosh Div Equal Erf Exp Floor Greater GreaterOrEqual Identity IsInf IsNaN Less
LessOrEqual Log Max Mean Min Mod Mul Neg Not Or Pow Reciprocal Round Sign Sin Sinh Sqrt Sub Sum Tan Where Xor.
"""
from __future__ import annotations

import functools
import math

import torch

from .registry import TORCH_DTYPES, Node, OpFn, converter, torch_dtype

_WIDE_UINTS = (torch.uint16, torch.uint32, torch.uint64)


def _wide_uints_as_int64(fn: OpFn) -> OpFn:
    """torch has almost no kernels for uint16/32/64: run ``fn`` on int64 copies and cast the result back.
    Exact for uint16/32; for uint64 the low 64 bits are exact (add, mul, bit ops, left shifts) but order,
    division and right shifts are wrong from 2**63 on."""

    def run(*args):
        wide = next((a.dtype for a in args if a is not None and a.dtype in _WIDE_UINTS), None)
        if wide is None:
            return fn(*args)
        out = fn(*(a.to(torch.int64) if a is not None and a.dtype in _WIDE_UINTS else a for a in args))
        return out.to(wide) if out.dtype == torch.int64 else out

    return run


def _sign(x: torch.Tensor) -> torch.Tensor:
    """torch.sign(nan) is 0; ONNX (like numpy) keeps NaN."""
    s = torch.sign(x)
    return torch.where(torch.isnan(x), x, s) if x.is_floating_point() else s


# float-only math (ONNX defines these for float types only)
_FLOAT_UNARY = {
    "Erf": torch.erf, "Exp": torch.exp, "Log": torch.log, "Sqrt": torch.sqrt, "Reciprocal": torch.reciprocal,
    "Floor": torch.floor, "Ceil": torch.ceil, "Round": torch.round,  # torch.round rounds half to even, as ONNX
    "Sin": torch.sin, "Cos": torch.cos, "Tan": torch.tan, "Asin": torch.asin, "Acos": torch.acos,
    "Atan": torch.atan, "Sinh": torch.sinh, "Cosh": torch.cosh, "Asinh": torch.asinh, "Acosh": torch.acosh,
    "Atanh": torch.atanh, "IsNaN": torch.isnan,
}
# also defined for integer (and bool) types
_INT_UNARY = {"Abs": torch.abs, "Neg": torch.neg, "Sign": _sign, "Not": torch.logical_not,
              "BitwiseNot": torch.bitwise_not}
_BINARY = {
    "Add": torch.add, "Sub": torch.sub, "Mul": torch.mul,
    "Equal": torch.eq, "Greater": torch.gt, "GreaterOrEqual": torch.ge, "Less": torch.lt, "LessOrEqual": torch.le,
    "And": torch.logical_and, "Or": torch.logical_or, "Xor": torch.logical_xor,
    "BitwiseAnd": torch.bitwise_and, "BitwiseOr": torch.bitwise_or, "BitwiseXor": torch.bitwise_xor,
}


@converter("Identity")
def _identity(node: Node) -> OpFn:
    return lambda x: x


@converter(*_FLOAT_UNARY)
def _float_unary(node: Node) -> OpFn:
    return _FLOAT_UNARY[node.op]


@converter(*_INT_UNARY)
def _int_unary(node: Node) -> OpFn:
    return _wide_uints_as_int64(_INT_UNARY[node.op])


@converter(*_BINARY)
def _binary(node: Node) -> OpFn:
    return _wide_uints_as_int64(_BINARY[node.op])


@converter("Div")
def _div(node: Node) -> OpFn:
    def div(a, b):  # integer division truncates toward zero (C semantics), not floor
        return a / b if a.is_floating_point() else torch.div(a, b, rounding_mode="trunc")

    return _wide_uints_as_int64(div)


@converter("Mod")
def _mod(node: Node) -> OpFn:
    if node.attr("fmod", 0):
        return _wide_uints_as_int64(torch.fmod)  # sign of the dividend, as C fmod

    def mod(a, b):  # sign of the divisor, as Python / numpy mod; a zero result takes the divisor's sign too
        r = torch.remainder(a, b)
        return torch.where(r == 0, torch.copysign(r, b), r) if r.is_floating_point() else r

    return _wide_uints_as_int64(mod)


@converter("Pow")
def _pow(node: Node) -> OpFn:
    # base and exponent may have different types (float ** int, int ** float): the result has the base's type
    return _wide_uints_as_int64(lambda a, b: torch.pow(a, b).to(a.dtype))


@converter("BitShift")
def _bit_shift(node: Node) -> OpFn:
    direction = node.attr("direction")
    if direction not in ("LEFT", "RIGHT"):
        raise node.unsupported(f"direction '{direction}'")
    shift = torch.bitwise_left_shift if direction == "LEFT" else torch.bitwise_right_shift
    return _wide_uints_as_int64(shift)


@converter("IsInf")
def _is_inf(node: Node) -> OpFn:
    positive, negative = node.attr("detect_positive", 1), node.attr("detect_negative", 1)

    def is_inf(x):
        if positive and negative:
            return torch.isinf(x)
        if positive or negative:
            return torch.isposinf(x) if positive else torch.isneginf(x)
        return torch.zeros_like(x, dtype=torch.bool)

    return is_inf


@converter("Max", "Min", "Sum", "Mean")
def _variadic(node: Node) -> OpFn:
    """Any number of inputs, all broadcast together."""
    op = {"Max": torch.maximum, "Min": torch.minimum, "Sum": torch.add, "Mean": torch.add}[node.op]

    def fold(*xs):
        out = functools.reduce(op, xs)
        return out / len(xs) if node.op == "Mean" else out

    return _wide_uints_as_int64(fold)


@converter("Where")
def _where(node: Node) -> OpFn:
    return _wide_uints_as_int64(lambda cond, x, y: torch.where(cond.to(torch.bool), x, y))


@converter("Clip")
def _clip(node: Node) -> OpFn:
    # torch.clamp gives max everywhere when min > max, as ONNX says
    if node.opset < 11:
        low, high = node.attr("min", -math.inf), node.attr("max", math.inf)
        return lambda x: torch.clamp(x, low, high)

    def clip(x, low=None, high=None):
        if low is None and high is None:
            return x
        return torch.clamp(x, None if low is None else low.reshape(()), None if high is None else high.reshape(()))

    return _wide_uints_as_int64(clip)


# ---- Cast, CastLike, BitCast ------------------------------------------------------------------------------
_FLOAT8 = {17: torch.float8_e4m3fn, 18: torch.float8_e4m3fnuz, 19: torch.float8_e5m2, 20: torch.float8_e5m2fnuz}
_E8M0 = 24
_CAST_TYPES = {**TORCH_DTYPES, **_FLOAT8, _E8M0: torch.float8_e8m0fnu}
# float8 e4m3fn has no infinity: without saturation, ONNX makes NaN of what rounds past 448 (ties go to 448);
# torch's cast saturates there instead. The other float8 casts of torch already follow ONNX's non-saturating rule.
_E4M3FN_OVERFLOW = 464.0


def _cast_dtype(node: Node, onnx_type) -> torch.dtype:
    dtype = _CAST_TYPES.get(int(onnx_type))
    return dtype if dtype is not None else torch_dtype(node, onnx_type)  # raises with the type's name


def _to_float8(x: torch.Tensor, dtype: torch.dtype, saturate: bool) -> torch.Tensor:
    """ONNX's float8 rule: saturate clamps out-of-range values (and ±inf) to ±max before rounding."""
    if not x.is_floating_point():
        x = x.to(torch.float32)
    if saturate:
        top = torch.finfo(dtype).max
        return torch.clamp(x, -top, top).to(dtype)
    if dtype == torch.float8_e4m3fn:
        x = torch.where(x.abs() > _E4M3FN_OVERFLOW, x.new_tensor(math.nan), x)
    return x.to(dtype)


def _to_e8m0(x: torch.Tensor, saturate: bool, round_mode: str) -> torch.Tensor:
    """ONNX's reference rule: keep the float32 exponent field (the sign is dropped), rounded up by the
    mantissa for 'up' / 'nearest'; NaN and inf give NaN; saturate stops the rounding at the largest exponent."""
    bits = x.to(torch.float32).view(torch.int32)
    exponent = (bits >> 23) & 0xFF
    if round_mode == "up":
        bump = (bits & 0x7FFFFF) != 0
    elif round_mode == "nearest":  # guard bit set and (round/sticky bits or the exponent's low bit) set
        bump = ((bits & 0x400000) != 0) & (((bits & 0x3FFFFF) != 0) | (exponent > 0))
    else:
        bump = torch.zeros_like(exponent, dtype=torch.bool)
    special = exponent == 0xFF
    bump = bump & ~special
    if saturate:
        bump = bump & (exponent != 0xFE)
    return (exponent + bump.to(exponent.dtype)).to(torch.uint8).view(torch.float8_e8m0fnu)


def _cast(x: torch.Tensor, dtype: torch.dtype, saturate: bool, round_mode: str) -> torch.Tensor:
    if x.dtype == dtype:
        return x
    if dtype in _FLOAT8.values():
        return _to_float8(x, dtype, saturate)
    if dtype == torch.float8_e8m0fnu:
        return _to_e8m0(x, saturate, round_mode)
    return x.to(dtype)  # differentiable between float types; float → int truncates, like ONNX's reference


def _cast_options(node: Node) -> tuple[bool, str]:
    round_mode = node.attr("round_mode", "up")
    if round_mode not in ("up", "down", "nearest"):
        raise node.unsupported(f"round_mode '{round_mode}'")
    return bool(node.attr("saturate", 1)), round_mode


@converter("Cast")
def _cast_op(node: Node) -> OpFn:
    dtype = _cast_dtype(node, node.attr("to"))
    saturate, round_mode = _cast_options(node)
    return lambda x: _cast(x, dtype, saturate, round_mode)


@converter("CastLike")
def _cast_like(node: Node) -> OpFn:
    saturate, round_mode = _cast_options(node)
    return lambda x, like: _cast(x, like.dtype, saturate, round_mode)


_FLOAT_OF_WIDTH = {2: torch.float16, 4: torch.float32, 8: torch.float64}


@converter("BitCast")
def _bit_cast(node: Node) -> OpFn:
    dtype = _cast_dtype(node, node.attr("to"))

    def bit_cast(x):  # a reinterpretation of the bits: no gradient flows through it
        if x.element_size() != dtype.itemsize:
            # ONNX requires equal widths, so a float input of another width comes from a module moved to
            # another precision (.double()): reinterpret the float of the width the graph had
            if not x.is_floating_point() or dtype.itemsize not in _FLOAT_OF_WIDTH:
                raise node.unsupported(f"{x.dtype} input to {dtype} (the bit widths differ)")
            x = x.to(_FLOAT_OF_WIDTH[dtype.itemsize])
        return x.detach().view(dtype)

    return bit_cast
