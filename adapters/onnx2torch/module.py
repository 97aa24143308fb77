"""The ONNX graph as a ``torch.nn.Module``: initializers and constant sub-expressions become frozen
buffers, every other node one converter call, run in graph order."""
from __future__ import annotations

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from onnxfault.errors import OnnxFaultError

from .registry import CONVERTERS, DEFAULT_DOMAINS, Node, unsupported_op

# Ops whose value is not a function of their inputs: never evaluated ahead of time.
_NOT_FOLDABLE = frozenset({"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Bernoulli",
                           "Multinomial", "Dropout"})
# Constant-folding stops at tensors larger than this (elements): big expansions stay lazy.
_FOLD_LIMIT = 1 << 24


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
        elif isinstance(value, list) and value and isinstance(value[0], onnx.TensorProto):
            value = [numpy_helper.to_array(v) for v in value]
        out[a.name] = value
    return out


def _tensor(array: np.ndarray) -> torch.Tensor:
    array = np.array(array)  # a writable copy: torch.from_numpy shares memory
    if array.dtype == object or array.dtype.kind in "SUO":
        raise OnnxFaultError("the ONNX→torch adapter does not support string tensors")
    if array.dtype.kind == "V" or str(array.dtype) not in _NUMPY_OK:
        raise OnnxFaultError(f"the ONNX→torch adapter does not support tensors of type {array.dtype}")
    return torch.from_numpy(array)


_NUMPY_OK = {"float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
             "uint64", "bool", "bfloat16"}


def _opsets(model: onnx.ModelProto) -> dict[str, int]:
    opsets = {o.domain: o.version for o in model.opset_import}
    if "ai.onnx" in opsets and "" not in opsets:
        opsets[""] = opsets["ai.onnx"]
    return opsets


class OnnxModule(torch.nn.Module):
    """The ONNX graph as a torch module: ``module(x)`` returns the graph outputs (a list, in order).

    ``constants`` gives values for graph inputs other than the one real input (a mask, a sequence length):
    they become buffers like the initializers. The graph must have exactly one input left.
    """

    def __init__(self, model: onnx.ModelProto, constants: dict[str, np.ndarray] | None = None):
        super().__init__()
        if model.functions:
            model = onnx.inliner.inline_local_functions(model)
        graph = model.graph
        opsets = _opsets(model)
        self.opset = opsets.get("", 13)
        known = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
        constants = dict(constants or {})
        unknown = set(constants) - {i.name for i in graph.input}
        if unknown:
            raise OnnxFaultError(f"constant values given for {', '.join(sorted(unknown))}, which are not graph inputs")
        known.update(constants)
        inputs = [i.name for i in graph.input if i.name not in known]
        if len(inputs) != 1:
            names = ", ".join(inputs) or "none"
            raise OnnxFaultError(f"the graph has {len(inputs)} real inputs ({names}); the ONNX→torch adapter "
                                 "differentiates with respect to one: give the others constant values")
        self.input_name = inputs[0]
        self.output_names = [o.name for o in graph.output]
        self._buffer_of: dict[str, str] = {}
        for name, value in known.items():
            self._add_constant(name, _tensor(value))
        self._steps = []
        for proto in graph.node:
            step = self._convert(proto, opsets)
            if step is not None:
                self._steps.append(step)
        # after step i, drop the tensors nothing later reads (autograd keeps what backward needs)
        last_use = {name: i for i, (_, ins, _) in enumerate(self._steps) for name in ins if name}
        keep = set(self.output_names) | set(self._buffer_of)
        self._free_after = [[] for _ in self._steps]
        for name, i in last_use.items():
            if name not in keep:
                self._free_after[i].append(name)

    def _add_constant(self, name: str, value: torch.Tensor) -> None:
        buffer = f"c{len(self._buffer_of)}"
        self.register_buffer(buffer, value, persistent=False)
        self._buffer_of[name] = buffer

    def _convert(self, proto: onnx.NodeProto, opsets: dict[str, int]):
        """The node as a step (fn, inputs, outputs), or None when it was evaluated now (constant inputs)."""
        name = proto.name or proto.output[0]
        maker = CONVERTERS.get(proto.op_type) if proto.domain in DEFAULT_DOMAINS else None
        if maker is None:
            raise unsupported_op(proto.op_type, name, proto.domain)
        outputs = list(proto.output)
        while outputs and not outputs[-1]:
            outputs.pop()
        node = Node(name, proto.op_type, _attributes(proto), opsets.get(proto.domain, opsets.get("", 13)),
                    len(outputs), proto.domain)
        fn = maker(node)
        inputs = list(proto.input)
        if proto.op_type not in _NOT_FOLDABLE and all(not i or i in self._buffer_of for i in inputs):
            values = self._call(fn, [self._constant(i) if i else None for i in inputs])
            if all(v is None or v.numel() <= _FOLD_LIMIT for v in values):
                for out, value in zip(outputs, values):
                    if out and value is not None:
                        self._add_constant(out, value.detach())
                return None
        return fn, inputs, outputs

    def _constant(self, name: str) -> torch.Tensor:
        return getattr(self, self._buffer_of[name])

    @staticmethod
    def _call(fn, args: list) -> tuple:
        while args and args[-1] is None:  # trailing optional inputs
            args.pop()
        result = fn(*args)
        return tuple(result) if isinstance(result, (tuple, list)) else (result,)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        env: dict[str, torch.Tensor | None] = {self.input_name: x, "": None}
        for name, buffer in self._buffer_of.items():
            env[name] = getattr(self, buffer)
        for (fn, inputs, outputs), dead in zip(self._steps, self._free_after):
            values = self._call(fn, [env[name] for name in inputs])
            for name, value in zip(outputs, values):
                if name:
                    env[name] = value
            del values
            for name in dead:
                env.pop(name, None)
        return [env[name] for name in self.output_names]


def to_torch(model: onnx.ModelProto, constants: dict[str, np.ndarray] | None = None) -> OnnxModule:
    """A frozen torch module computing ``model`` (only its input can get gradients)."""
    module = OnnxModule(model, constants).eval()
    for p in module.buffers():
        p.requires_grad_(False)
    return module
