"""ONNX (sub-)graph → ``torch.nn.Module``, for gradients with respect to the input.

One converter per ONNX op type, in one registry (``CONVERTERS``). A converter receives the node, its
constant inputs and the model's opset, and returns a function of the node's tensor inputs. Weights become
frozen buffers (``requires_grad=False``); only the input gets gradients. Shape arithmetic (Shape, Gather,
Concat of shapes, …) runs on int64 tensors, as in onnxruntime.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper

from onnxfault.errors import OnnxFaultError

OpFn = Callable[..., object]


@dataclass
class Node:
    """What a converter sees: op type, attributes and opset."""

    name: str
    op: str
    attrs: dict
    opset: int

    def attr(self, key: str, default=None):
        return self.attrs.get(key, default)


CONVERTERS: dict[str, Callable[[Node], OpFn]] = {}


def converter(*ops: str):
    def add(fn):
        for op in ops:
            CONVERTERS[op] = fn
        return fn

    return add


def _ints(values) -> list[int]:
    if isinstance(values, torch.Tensor):
        return [int(v) for v in values.reshape(-1).tolist()]
    return [int(v) for v in np.asarray(values).reshape(-1)]


def _axis(axis: int, rank: int) -> int:
    return axis + rank if axis < 0 else axis


# ---- elementwise and activations ---------------------------------------------------------------------
_UNARY = {
    "Relu": F.relu, "Sigmoid": torch.sigmoid, "Tanh": torch.tanh, "Softplus": F.softplus, "Softsign": F.softsign,
    "Erf": torch.erf, "Exp": torch.exp, "Log": torch.log, "Sqrt": torch.sqrt, "Neg": torch.neg, "Abs": torch.abs,
    "Identity": lambda x: x, "Floor": torch.floor, "Ceil": torch.ceil, "Reciprocal": torch.reciprocal,
}
_BINARY = {"Add": torch.add, "Sub": torch.sub, "Mul": torch.mul, "Div": None, "Pow": torch.pow}


@converter(*_UNARY)
def _unary(node: Node) -> OpFn:
    return _UNARY[node.op]


@converter(*_BINARY)
def _binary(node: Node) -> OpFn:
    if node.op == "Div":
        return lambda a, b: torch.div(a, b, rounding_mode="trunc") if not a.is_floating_point() else a / b
    return _BINARY[node.op]


@converter("LeakyRelu")
def _leaky(node: Node) -> OpFn:
    alpha = node.attr("alpha", 0.01)
    return lambda x: F.leaky_relu(x, alpha)


@converter("Elu")
def _elu(node: Node) -> OpFn:
    alpha = node.attr("alpha", 1.0)
    return lambda x: F.elu(x, alpha)


@converter("Selu")
def _selu(node: Node) -> OpFn:
    alpha, gamma = node.attr("alpha", 1.67326319217681884765625), node.attr("gamma", 1.05070102214813232421875)
    return lambda x: gamma * torch.where(x > 0, x, alpha * torch.expm1(x))


@converter("PRelu")
def _prelu(node: Node) -> OpFn:
    return lambda x, slope: torch.where(x >= 0, x, x * slope)


@converter("HardSigmoid")
def _hard_sigmoid(node: Node) -> OpFn:
    alpha, beta = node.attr("alpha", 0.2), node.attr("beta", 0.5)
    return lambda x: torch.clamp(alpha * x + beta, 0.0, 1.0)


@converter("HardSwish")
def _hard_swish(node: Node) -> OpFn:
    return lambda x: x * torch.clamp(x / 6.0 + 0.5, 0.0, 1.0)


@converter("Clip")
def _clip(node: Node) -> OpFn:
    if node.opset < 11:
        low, high = node.attr("min", -math.inf), node.attr("max", math.inf)
        return lambda x: torch.clamp(x, low, high)

    def clip(x, low=None, high=None):
        return torch.clamp(x, None if low is None else low.item(), None if high is None else high.item())

    return clip


@converter("Softmax", "LogSoftmax")
def _softmax(node: Node) -> OpFn:
    fn = torch.softmax if node.op == "Softmax" else torch.log_softmax
    axis = node.attr("axis", -1 if node.opset >= 13 else 1)
    if node.opset >= 13:
        return lambda x: fn(x, _axis(axis, x.dim()))

    def coerced(x):  # before opset 13: flatten to 2-D at `axis`, normalise the trailing block
        a = _axis(axis, x.dim())
        return fn(x.reshape(int(np.prod(x.shape[:a])), -1), 1).reshape(x.shape)

    return coerced


@converter("Dropout")
def _dropout(node: Node) -> OpFn:
    return lambda x, *_: x


@converter("Cast")
def _cast(node: Node) -> OpFn:
    dtype = {1: torch.float32, 6: torch.int32, 7: torch.int64, 9: torch.bool, 11: torch.float64}.get(node.attr("to"))
    if dtype is None:
        raise OnnxFaultError(f"Cast to ONNX type {node.attr('to')} is not supported (node '{node.name}')")
    return lambda x: x.to(dtype)


# ---- linear layers ------------------------------------------------------------------------------------
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


def _spatial_pads(node: Node, x: torch.Tensor, kernel, strides, dilations) -> list[int]:
    """ONNX pads (begins…, ends…) for this input, resolving auto_pad SAME_UPPER/SAME_LOWER."""
    spatial = x.shape[2:]
    auto = node.attr("auto_pad", "NOTSET")  # attributes arrive decoded (_attributes)
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        totals = [max((math.ceil(n / s) - 1) * s + (k - 1) * d + 1 - n, 0)
                  for n, k, s, d in zip(spatial, kernel, strides, dilations)]
        small = [t // 2 for t in totals]
        big = [t - t // 2 for t in totals]
        return (small + big) if auto == "SAME_UPPER" else (big + small)
    if auto == "VALID":
        return [0] * (2 * len(spatial))
    return list(node.attr("pads", [0] * (2 * len(spatial))))


def _torch_pad(pads: list[int]) -> list[int]:
    """ONNX (b1, b2, …, e1, e2, …) → F.pad's (last-axis begin, end, …)."""
    n = len(pads) // 2
    out = []
    for i in reversed(range(n)):
        out += [pads[i], pads[i + n]]
    return out


def _geometry(node: Node, w: torch.Tensor) -> tuple[list[int], list[int], list[int]]:
    """Kernel size, strides and dilations of a convolution with weights ``w``."""
    k = list(w.shape[2:])
    return k, list(node.attr("strides", [1] * len(k))), list(node.attr("dilations", [1] * len(k)))


@converter("Conv")
def _conv(node: Node) -> OpFn:
    group = node.attr("group", 1)

    def conv(x, w, b=None):
        k, strides, dilations = _geometry(node, w)
        pads = _spatial_pads(node, x, k, strides, dilations)
        fn = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[len(k)]
        if any(pads):
            x = F.pad(x, _torch_pad(pads))
        return fn(x, w, b, stride=strides, dilation=dilations, groups=group)

    return conv


@converter("ConvTranspose")
def _conv_transpose(node: Node) -> OpFn:
    group = node.attr("group", 1)

    def deconv(x, w, b=None):
        k, strides, dilations = _geometry(node, w)
        pads = list(node.attr("pads", [0] * (2 * len(k))))
        if pads[:len(k)] != pads[len(k):]:
            raise OnnxFaultError(f"ConvTranspose '{node.name}' with asymmetric pads is not supported")
        out_pad = list(node.attr("output_padding", [0] * len(k)))
        fn = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}[len(k)]
        return fn(x, w, b, stride=strides, padding=pads[:len(k)], output_padding=out_pad, groups=group,
                  dilation=dilations)

    return deconv


@converter("BatchNormalization")
def _batch_norm(node: Node) -> OpFn:
    eps = node.attr("epsilon", 1e-5)

    def bn(x, scale, bias, mean, var, *_):
        view = [1, -1] + [1] * (x.dim() - 2)
        return (x - mean.reshape(view)) / torch.sqrt(var.reshape(view) + eps) * scale.reshape(view) + bias.reshape(view)

    return bn


# ---- pooling ------------------------------------------------------------------------------------------
@converter("MaxPool", "AveragePool")
def _pool(node: Node) -> OpFn:
    kernel = list(node.attr("kernel_shape"))
    strides = list(node.attr("strides", [1] * len(kernel)))
    dilations = list(node.attr("dilations", [1] * len(kernel)))
    ceil = bool(node.attr("ceil_mode", 0))
    include_pad = bool(node.attr("count_include_pad", 0))
    is_max = node.op == "MaxPool"
    if len(kernel) != 2:
        raise OnnxFaultError(f"{node.op} '{node.name}' over {len(kernel)} spatial axes is not supported (2 only)")

    def pool(x):
        pads = _spatial_pads(node, x, kernel, strides, dilations)
        if is_max:
            if any(pads):
                x = F.pad(x, _torch_pad(pads), value=-math.inf)
            return F.max_pool2d(x, kernel, strides, 0, dilations, ceil_mode=ceil)
        if not any(pads):
            return F.avg_pool2d(x, kernel, strides, 0, ceil_mode=ceil)
        padded = F.pad(x, _torch_pad(pads))
        total = F.avg_pool2d(padded, kernel, strides, 0, ceil_mode=ceil, divisor_override=1)
        if include_pad:
            return total / float(np.prod(kernel))
        ones = F.pad(torch.ones_like(x[:1, :1]), _torch_pad(pads))
        return total / F.avg_pool2d(ones, kernel, strides, 0, ceil_mode=ceil, divisor_override=1)

    return pool


@converter("GlobalAveragePool", "GlobalMaxPool")
def _global_pool(node: Node) -> OpFn:
    if node.op == "GlobalAveragePool":
        return lambda x: x.mean(dim=tuple(range(2, x.dim())), keepdim=True)
    return lambda x: x.amax(dim=tuple(range(2, x.dim())), keepdim=True)


def _reduce_axes(node: Node, axes_input):
    if node.opset >= 18 or (node.op == "ReduceSum" and node.opset >= 13):
        return None if axes_input is None else _ints(axes_input)
    axes = node.attr("axes")
    return None if axes is None else list(axes)


@converter("ReduceMean", "ReduceMax", "ReduceSum", "ReduceMin")
def _reduce(node: Node) -> OpFn:
    keep = bool(node.attr("keepdims", 1))
    fn = {"ReduceMean": torch.mean, "ReduceMax": torch.amax, "ReduceSum": torch.sum, "ReduceMin": torch.amin}[node.op]

    def reduce(x, axes_input=None):
        axes = _reduce_axes(node, axes_input)
        if axes is None or not axes:
            if axes is not None and node.attr("noop_with_empty_axes", 0):
                return x
            axes = list(range(x.dim()))
        return fn(x, dim=tuple(_axis(a, x.dim()) for a in axes), keepdim=keep)

    return reduce


# ---- shapes and data movement -------------------------------------------------------------------------
@converter("Flatten")
def _flatten(node: Node) -> OpFn:
    axis = node.attr("axis", 1)
    return lambda x: x.reshape(int(np.prod(x.shape[:_axis(axis, x.dim())])), -1)


@converter("Reshape")
def _reshape(node: Node) -> OpFn:
    allow_zero = node.attr("allowzero", 0)

    def reshape(x, shape):
        target = _ints(shape)
        if not allow_zero:
            target = [x.shape[i] if d == 0 else d for i, d in enumerate(target)]
        return x.reshape(target)

    return reshape


@converter("Transpose")
def _transpose(node: Node) -> OpFn:
    perm = node.attr("perm")
    return lambda x: x.permute(*(perm if perm is not None else reversed(range(x.dim()))))


@converter("Concat")
def _concat(node: Node) -> OpFn:
    axis = node.attr("axis")
    return lambda *xs: torch.cat(xs, dim=_axis(axis, xs[0].dim()))


@converter("Shape")
def _shape(node: Node) -> OpFn:
    start, end = node.attr("start", 0), node.attr("end")
    return lambda x: torch.tensor(list(x.shape), dtype=torch.int64)[start:end]


@converter("Gather")
def _gather(node: Node) -> OpFn:
    axis = node.attr("axis", 0)

    def gather(x, indices):
        a = _axis(axis, x.dim())
        idx = torch.where(indices < 0, indices + x.shape[a], indices).long()
        out = torch.index_select(x, a, idx.reshape(-1))
        return out.reshape(tuple(x.shape[:a]) + tuple(idx.shape) + tuple(x.shape[a + 1:]))

    return gather


def _axes_arg(node: Node, axes_input) -> list[int]:
    """Axes from the attribute (opset < 13) or the optional input (none given: [])."""
    if node.opset < 13:
        return list(node.attr("axes", []))
    return [] if axes_input is None else _ints(axes_input)


@converter("Unsqueeze")
def _unsqueeze(node: Node) -> OpFn:
    def unsqueeze(x, axes_input=None):
        axes = _axes_arg(node, axes_input)
        rank = x.dim() + len(axes)
        for a in sorted(_axis(a, rank) for a in axes):
            x = x.unsqueeze(a)
        return x

    return unsqueeze


@converter("Squeeze")
def _squeeze(node: Node) -> OpFn:
    def squeeze(x, axes_input=None):
        axes = _axes_arg(node, axes_input)
        if not axes:
            return x.squeeze()
        for a in sorted((_axis(a, x.dim()) for a in axes), reverse=True):
            x = x.squeeze(a)
        return x

    return squeeze


@converter("Slice")
def _slice(node: Node) -> OpFn:
    def slice_(x, starts=None, ends=None, axes=None, steps=None):
        if node.opset < 10:
            starts, ends, axes = node.attr("starts"), node.attr("ends"), node.attr("axes")
        starts, ends = _ints(starts), _ints(ends)
        axes = list(range(len(starts))) if axes is None else _ints(axes)
        steps = [1] * len(starts) if steps is None else _ints(steps)
        index = [slice(None)] * x.dim()
        for s, e, a, st in zip(starts, ends, axes, steps):
            if st < 0:
                raise OnnxFaultError(f"Slice '{node.name}' with a negative step is not supported")
            n = x.shape[_axis(a, x.dim())]
            s = max(0, min(n, s + n if s < 0 else s))
            e = max(0, min(n, e + n if e < 0 else e))
            index[_axis(a, x.dim())] = slice(s, e, st)
        return x[tuple(index)]

    return slice_


@converter("Pad")
def _pad(node: Node) -> OpFn:
    mode = node.attr("mode", "constant")

    def pad(x, pads=None, value=None, axes=None):
        if node.opset < 11:
            pads, value = node.attr("pads"), node.attr("value", 0.0)
        pads = _ints(pads)
        if axes is not None:
            full = [0] * (2 * x.dim())
            for i, a in enumerate(_ints(axes)):
                full[_axis(a, x.dim())], full[_axis(a, x.dim()) + x.dim()] = pads[i], pads[i + len(pads) // 2]
            pads = full
        fill = 0.0 if value is None else float(value if not isinstance(value, torch.Tensor) else value.item())
        if mode == "constant":
            return F.pad(x, _torch_pad(pads), value=fill)
        return F.pad(x, _torch_pad(pads)[: 2 * (x.dim() - 2)], mode={"reflect": "reflect", "edge": "replicate"}[mode])

    return pad


@converter("Constant")
def _constant(node: Node) -> OpFn:
    value = node.attr("value")
    if value is None:
        for key in ("value_float", "value_int", "value_floats", "value_ints"):
            if key in node.attrs:
                value = np.asarray(node.attrs[key])
                break
    tensor = torch.from_numpy(np.array(value))
    return lambda: tensor


@converter("ConstantOfShape")
def _constant_of_shape(node: Node) -> OpFn:
    value = node.attr("value")
    fill = torch.from_numpy(np.array(value)).reshape(-1) if value is not None else torch.zeros(1)
    return lambda shape: fill.expand(_ints(shape)).clone() if _ints(shape) else fill.reshape(())


# ---- the module -------------------------------------------------------------------------------------------
def _attributes(node: onnx.NodeProto) -> dict:
    out = {}
    for a in node.attribute:
        value = onnx.helper.get_attribute_value(a)
        if isinstance(value, onnx.TensorProto):
            value = numpy_helper.to_array(value)
        elif isinstance(value, bytes):
            value = value.decode()
        elif isinstance(value, list) and value and isinstance(value[0], bytes):
            value = [v.decode() for v in value]
        out[a.name] = value
    return out


class OnnxModule(torch.nn.Module):
    """The ONNX graph as a torch module: ``module(x)`` returns the graph outputs (a list, in order)."""

    def __init__(self, model: onnx.ModelProto):
        super().__init__()
        graph = model.graph
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)
        initializers = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
        inputs = [i.name for i in graph.input if i.name not in initializers]
        self.input_name = inputs[0]
        self.output_names = [o.name for o in graph.output]
        self._buffer_of: dict[str, str] = {}
        for i, (name, value) in enumerate(initializers.items()):
            buffer = f"w{i}"
            self.register_buffer(buffer, torch.from_numpy(np.array(value)), persistent=False)
            self._buffer_of[name] = buffer
        self._steps = []
        for node in graph.node:
            fn_maker = CONVERTERS.get(node.op_type)
            if fn_maker is None or node.domain not in ("", "ai.onnx"):
                raise OnnxFaultError(f"the ONNX→torch adapter does not support op {node.op_type} (node "
                                     f"'{node.name or node.output[0]}'); supported: {', '.join(sorted(CONVERTERS))}")
            fn = fn_maker(Node(node.name or node.output[0], node.op_type, _attributes(node), self.opset))
            self._steps.append((fn, list(node.input), list(node.output)))
        # after step i, drop the tensors nothing later reads (autograd keeps what backward needs)
        last_use = {name: i for i, (_, ins, _) in enumerate(self._steps) for name in ins if name}
        keep = set(self.output_names) | set(self._buffer_of)
        self._free_after = [[] for _ in self._steps]
        for name, i in last_use.items():
            if name not in keep:
                self._free_after[i].append(name)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        env: dict[str, torch.Tensor | None] = {self.input_name: x, "": None}
        for name, buffer in self._buffer_of.items():
            env[name] = getattr(self, buffer)
        for (fn, inputs, outputs), dead in zip(self._steps, self._free_after):
            args = [env[name] for name in inputs]
            while args and args[-1] is None:  # trailing optional inputs
                args.pop()
            env[outputs[0]] = fn(*args)  # extra outputs (e.g. Dropout's mask) are unused by inference
            del args
            for name in dead:
                env.pop(name, None)
        return [env[name] for name in self.output_names]


def to_torch(model: onnx.ModelProto) -> OnnxModule:
    """A frozen torch module computing ``model`` (only its input can get gradients)."""
    module = OnnxModule(model).eval()
    for p in module.buffers():
        p.requires_grad_(False)
    return module
