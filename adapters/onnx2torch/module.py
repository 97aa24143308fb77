"""The ONNX graph as a ``torch.nn.Module``: initializers and constant sub-expressions become frozen
buffers, every other node one converter call, run in graph order.

Control flow (If, Loop, Scan): a node whose attributes hold graphs sees each of them as a ``Graph``
sub-module, built once here; its converter gets, after its own inputs, one more argument: a dict of the
enclosing graph's tensors that those subgraphs read by name (their free variables).
"""
from __future__ import annotations

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from onnxfault.errors import OnnxFaultError

from .registry import CONVERTERS, Node, qualified_name, unsupported_op

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
    if array.dtype.kind in "SU" or (array.dtype == object and array.size and isinstance(array.flat[0], (str, bytes))):
        raise OnnxFaultError("the ONNX→torch adapter does not support string tensors")
    if str(array.dtype) in _BIT_VIEWS:  # ml_dtypes' bfloat16 and float8 arrays: reinterpret their bits
        bits, dtype = _BIT_VIEWS[str(array.dtype)]
        return torch.from_numpy(array.view(bits)).view(dtype)
    if array.dtype.kind == "V" or str(array.dtype) not in _NUMPY_OK:
        raise OnnxFaultError(f"the ONNX→torch adapter does not support tensors of type {array.dtype}")
    return torch.from_numpy(array)


_NUMPY_OK = {"float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
             "uint64", "bool"}
_BIT_VIEWS = {"bfloat16": (np.uint16, torch.bfloat16), "float8_e4m3fn": (np.uint8, torch.float8_e4m3fn),
              "float8_e4m3fnuz": (np.uint8, torch.float8_e4m3fnuz), "float8_e5m2": (np.uint8, torch.float8_e5m2),
              "float8_e5m2fnuz": (np.uint8, torch.float8_e5m2fnuz), "float8_e8m0fnu": (np.uint8, torch.float8_e8m0fnu)}


def _opsets(model: onnx.ModelProto) -> dict[str, int]:
    opsets = {o.domain: o.version for o in model.opset_import}
    if "ai.onnx" in opsets and "" not in opsets:
        opsets[""] = opsets["ai.onnx"]
    return opsets


class Graph(torch.nn.Module):
    """One ONNX graph as a list of steps: ``graph.run(inputs, scope)`` binds ``inputs`` to the graph inputs
    by position and returns its outputs in order. ``free`` names the tensors of enclosing graphs it reads:
    ``scope`` maps them to their values."""

    def __init__(self, graph: onnx.GraphProto, opsets: dict[str, int], inputs: list[str],
                 known: dict[str, np.ndarray], trainable: frozenset[str] = frozenset()):
        super().__init__()
        self.input_names = inputs
        self.output_names = [o.name for o in graph.output]
        self.bodies = torch.nn.ModuleList()  # the subgraphs of control-flow nodes
        self._buffer_of: dict[str, str] = {}
        self.parameter_of: dict[str, str] = {}  # a trainable initializer → its parameter: never folded
        for name, value in known.items():
            if name in trainable:
                self.parameter_of[name] = f"p{len(self.parameter_of)}"
                self.register_parameter(self.parameter_of[name], torch.nn.Parameter(_tensor(value)))
            else:
                self._add_constant(name, _tensor(value))
        self._steps = []
        for proto in graph.node:
            step = self._convert(proto, opsets)
            if step is not None:
                self._steps.append(step)
        defined = set(inputs) | set(self._buffer_of) | set(self.parameter_of)
        self.free: list[str] = []
        for _, ins, outs in self._steps:
            self.free += [n for n in ins if n and n not in defined and n not in self.free]
            defined.update(outs)
        self.free += [n for n in self.output_names if n not in defined and n not in self.free]
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
        maker = CONVERTERS.get(qualified_name(proto.domain, proto.op_type))
        if maker is None:
            raise unsupported_op(proto.op_type, name, proto.domain)
        outputs = list(proto.output)
        while outputs and not outputs[-1]:
            outputs.pop()
        attrs, outer = self._subgraphs(_attributes(proto), opsets)
        node = Node(name, proto.op_type, attrs, opsets.get(proto.domain, opsets.get("", 13)), len(outputs),
                    proto.domain, len(proto.output))
        fn = maker(node)
        inputs = list(proto.input)
        if outer is not None:  # the outer-scope values its subgraphs read follow its inputs, as one dict
            fn = _with_scope(fn, len(inputs), outer)
            inputs += outer
        if proto.op_type not in _NOT_FOLDABLE and all(not i or i in self._buffer_of for i in inputs):
            values = self._call(fn, [self._constant(i) if i else None for i in inputs])
            if all(v is None or v.numel() <= _FOLD_LIMIT for v in values):
                for out, value in zip(outputs, values):
                    if out and value is not None:
                        self._add_constant(out, value.detach())
                return None
        return fn, inputs, outputs

    def _subgraphs(self, attrs: dict, opsets: dict[str, int]) -> tuple[dict, list[str] | None]:
        """The attributes with each graph built as a sub-module, and the names those graphs read from
        this scope (None when there is no graph)."""
        outer = None
        for key, value in attrs.items():
            if isinstance(value, onnx.GraphProto):
                known = {i.name: numpy_helper.to_array(i) for i in value.initializer}
                body = Graph(value, opsets, [i.name for i in value.input], known)
                self.bodies.append(body)
                attrs[key] = body
                outer = outer or []
                outer += [n for n in body.free if n not in outer]
        return attrs, outer

    def _constant(self, name: str) -> torch.Tensor:
        return getattr(self, self._buffer_of[name])

    @staticmethod
    def _call(fn, args: list) -> tuple:
        while args and args[-1] is None:  # trailing optional inputs
            args.pop()
        result = fn(*args)
        return tuple(result) if isinstance(result, (tuple, list)) else (result,)

    def run(self, inputs: list, scope: dict | None = None) -> list:
        env: dict[str, torch.Tensor | None] = dict(scope or {})
        for name, buffer in [*self._buffer_of.items(), *self.parameter_of.items()]:
            env[name] = getattr(self, buffer)
        env.update(zip(self.input_names, inputs))
        env[""] = None
        for (fn, names, outputs), dead in zip(self._steps, self._free_after):
            values = self._call(fn, [env[name] for name in names])
            for name, value in zip(outputs, values):
                if name:
                    env[name] = value
            del values
            for name in dead:
                env.pop(name, None)
        return [env[name] for name in self.output_names]


def _with_scope(fn, n_inputs: int, outer: list[str]):
    """``fn`` called with its ``n_inputs`` inputs then the dict of the outer values that follow them."""

    def call(*args):
        args = list(args) + [None] * (n_inputs + len(outer) - len(args))
        return fn(*args[:n_inputs], dict(zip(outer, args[n_inputs:])))

    return call


class OnnxModule(Graph):
    """The ONNX graph as a torch module: ``module(x)`` returns the graph outputs (a list, in order).

    ``constants`` gives values for graph inputs other than the one real input (a mask, a sequence length):
    they become buffers like the initializers. The graph must have exactly one input left. ``trainable`` names
    initializers that become parameters (``parameter_of`` maps each to its name), for retraining.
    """

    def __init__(self, model: onnx.ModelProto, constants: dict[str, np.ndarray] | None = None,
                 trainable: frozenset[str] = frozenset()):
        if model.functions:
            model = onnx.inliner.inline_local_functions(model)
        graph = model.graph
        opsets = _opsets(model)
        known = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
        constants = dict(constants or {})
        unknown = set(constants) - {i.name for i in graph.input}
        if unknown:
            raise OnnxFaultError(f"constant values given for {', '.join(sorted(unknown))}, which are not graph inputs")
        known.update(constants)
        inputs = [i.name for i in graph.input if i.name not in known]
        if not inputs:
            raise OnnxFaultError("the graph has no real inputs (all are constants); nothing to differentiate")
        super().__init__(graph, opsets, inputs, known, frozenset(trainable))
        if self.free:
            raise OnnxFaultError(f"the graph reads tensors that nothing defines: {', '.join(self.free)}")
        self.opset = opsets.get("", 13)
        self.input_name = inputs[0]
        self.side_names = inputs[1:]  # further inputs, fed per call (a text model's attention mask, …)

    def forward(self, x: torch.Tensor, *side: torch.Tensor) -> list[torch.Tensor]:
        if len(side) != len(self.side_names):
            raise OnnxFaultError(f"the graph has inputs {', '.join([self.input_name, *self.side_names])}; "
                                 f"got {1 + len(side)} values")
        return self.run([x, *side])


def to_torch(model: onnx.ModelProto, constants: dict[str, np.ndarray] | None = None) -> OnnxModule:
    """A frozen torch module computing ``model``: ``module(x, *side)`` takes its first input and then its others
    in graph order (only the first is meant to get gradients)."""
    module = OnnxModule(model, constants).eval()
    for p in module.buffers():
        p.requires_grad_(False)
    return module
