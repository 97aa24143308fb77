"""Graph surgery on ONNX models with onnx-graphsurgeon.

Every function takes a ``ModelProto`` and returns a new one; the caller's model is never edited.

Candidate neuron layers (``candidate_layers``) follow DeepFault's "trainable layers except the output
layer", read off the ONNX graph:

* the output of every activation node (Relu, LeakyRelu, PRelu, Elu, Selu, Celu, Sigmoid, Tanh,
  HardSigmoid, HardSwish, Softplus, Softsign, ThresholdedRelu, Gelu, Mish, Clip with min 0 as in
  ReLU6, and x·sigmoid(x) / x·hardsigmoid(x) written as a Mul);
* the output of every linear unit (Gemm, MatMul, Conv, ConvTranspose; a following constant bias Add or
  scale Mul, a BatchNormalization and layout/identity ops — Transpose, Identity, Dropout — belong to the
  unit) that is NOT directly followed by an activation;
* minus the class-score layer (the last linear unit before the model output) and everything after it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from .errors import OnnxFaultError, close_matches_hint

ACTIVATIONS = frozenset({
    "Relu", "LeakyRelu", "PRelu", "Elu", "Selu", "Celu", "Sigmoid", "Tanh", "HardSigmoid",
    "HardSwish", "Softplus", "Softsign", "ThresholdedRelu", "Gelu", "Mish", "Clip",
})
LINEAR = frozenset({"Gemm", "MatMul", "Conv", "ConvTranspose"})
# Ops that keep the channel axis where it is (used to find the channel axis of a tensor).
_CHANNEL_PRESERVING = ACTIVATIONS | {
    "Add", "Sub", "Mul", "Div", "Dropout", "Identity", "Cast", "Neg", "Abs", "Sqrt", "Exp", "Log",
}
_CHANNELS_FIRST = frozenset({
    "Conv", "ConvTranspose", "BatchNormalization", "InstanceNormalization", "MaxPool", "AveragePool",
    "LpPool", "GlobalAveragePool", "GlobalMaxPool", "LRN",
})


@dataclass(frozen=True)
class CandidateTensor:
    """A tensor that holds neurons, and the op that produced it (``Swish`` for x·sigmoid(x))."""

    tensor: str
    op: str


def _graph(model: onnx.ModelProto) -> gs.Graph:
    return gs.import_onnx(model)


def _export(graph: gs.Graph, like: onnx.ModelProto) -> onnx.ModelProto:
    out = gs.export_onnx(graph)
    out.ir_version = like.ir_version
    del out.opset_import[:]
    out.opset_import.extend(like.opset_import)
    out.producer_name = like.producer_name
    out.producer_version = like.producer_version
    return out


def _lookup(graph: gs.Graph, names: list[str]) -> list[gs.Variable]:
    tensors = graph.tensors()
    variables = [n for n, t in tensors.items() if isinstance(t, gs.Variable)]
    found = []
    for name in names:
        tensor = tensors.get(name)
        if not isinstance(tensor, gs.Variable):
            raise OnnxFaultError(close_matches_hint(name, variables, "tensor") + " (see `onnxfault inspect`)")
        found.append(tensor)
    return found


def require_tensors(model: onnx.ModelProto, names: list[str]) -> None:
    """Fail with close matches when a name is not a variable tensor of ``model``."""
    _lookup(_graph(model), list(names))


def _as_output(tensor: gs.Variable) -> gs.Variable:
    if tensor.dtype is None:
        tensor.dtype = np.float32
    return tensor


def expose_outputs(model: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    """Return a copy of ``model`` whose outputs are its own outputs followed by the tensors ``names``."""
    graph = _graph(model)
    present = {t.name for t in graph.outputs}
    for tensor in _lookup(graph, list(names)):
        if tensor.name not in present:
            graph.outputs.append(_as_output(tensor))
            present.add(tensor.name)
    return _export(graph, model)


def cut_at(model: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    """Return the sub-model from the input up to the tensors ``names`` (its only outputs)."""
    graph = _graph(model)
    graph.outputs = [_as_output(t) for t in _lookup(graph, list(names))]
    graph.cleanup(remove_unused_graph_inputs=False).toposort()
    return _export(graph, model)


def flattened_name(name: str) -> str:
    return f"{name}__scores"


def flatten_output(model: onnx.ModelProto, name: str) -> onnx.ModelProto:
    """A copy with one more output, ``flattened_name(name)``: the output ``name`` flattened to (N, rest)."""
    graph = _graph(model)
    (tensor,) = [t for t in graph.outputs if t.name == name]
    flat = gs.Variable(flattened_name(name), dtype=tensor.dtype or np.float32)
    graph.nodes.append(gs.Node("Flatten", inputs=[tensor], outputs=[flat], attrs={"axis": 1}))
    graph.outputs.append(flat)
    return _export(graph, model)


RESHAPING = frozenset({"Flatten", "Reshape", "Squeeze", "Unsqueeze", "Identity", "Transpose"})


def producing_op(model: onnx.ModelProto, tensor: str, through: frozenset[str] = frozenset()) -> str | None:
    """The op type that computes ``tensor``, looking back through the ops in ``through``; None for an
    input or initializer."""
    producers = {o: n for n in model.graph.node for o in n.output}
    node = producers.get(tensor)
    while node is not None and node.op_type in through and node.input:
        node = producers.get(node.input[0])
    return None if node is None else node.op_type


MASK = "onnxfault__mask"


def insert_masks(model: onnx.ModelProto, probes: list[tuple[str, tuple[int, ...], int]]) -> onnx.ModelProto:
    """Add a float input ``onnxfault__mask`` of shape (N, neurons) multiplied into each probed tensor.

    A probe ``(tensor, shape, channel_axis)`` gives the tensor's per-sample ``shape`` and the axis (per
    sample) that indexes its neurons, or None when every element is a neuron. Its mask columns (in probe
    order) are reshaped to broadcast over the other axes; every consumer of the tensor then reads the
    masked tensor, so a 0 in the mask zeroes that neuron for that row.
    """
    graph = _graph(model)
    mask = gs.Variable(MASK, dtype=np.float32, shape=["N", sum(_neuron_count(s, a) for _, s, a in probes)])
    graph.inputs.append(mask)
    start = 0
    for i, ((_, shape, axis), tensor) in enumerate(zip(probes, _lookup(graph, [t for t, _, _ in probes]))):
        count = _neuron_count(shape, axis)
        part = gs.Variable(f"onnxfault__mask{i}", dtype=np.float32)
        bounds = [gs.Constant(f"onnxfault__mask{i}_{n}", np.asarray(v, np.int64))
                  for n, v in (("start", [start]), ("end", [start + count]), ("axis", [1]))]
        graph.nodes.append(gs.Node("Slice", inputs=[mask, *bounds], outputs=[part]))
        target = [-1, *shape] if axis is None else [-1, *(count if a == axis else 1 for a in range(len(shape)))]
        shaped = gs.Variable(f"onnxfault__mask{i}_shaped", dtype=np.float32)
        graph.nodes.append(gs.Node("Reshape", inputs=[part, gs.Constant(f"onnxfault__mask{i}_shape",
                                                                         np.asarray(target, np.int64))],
                                   outputs=[shaped]))
        masked = gs.Variable(f"{tensor.name}__masked", dtype=tensor.dtype)
        for consumer in list(tensor.outputs):
            for j, t in enumerate(consumer.inputs):
                if t is tensor:
                    consumer.inputs[j] = masked
        graph.nodes.append(gs.Node("Mul", inputs=[tensor, shaped], outputs=[masked]))
        start += count
    graph.toposort()
    return _export(graph, model)


def _neuron_count(shape: tuple[int, ...], axis: int | None) -> int:
    return int(np.prod(shape, dtype=np.int64)) if axis is None else int(shape[axis])


def _constant_value(tensor) -> np.ndarray | None:
    if isinstance(tensor, gs.Constant):
        return np.asarray(tensor.values)
    if len(tensor.inputs) == 1 and tensor.inputs[0].op == "Constant":
        value = tensor.inputs[0].attrs.get("value")
        return None if value is None else np.asarray(value.values)
    return None


def _is_constant(tensor) -> bool:
    return _constant_value(tensor) is not None


def _is_relu_clip(node: gs.Node) -> bool:
    """Clip(min=0, max=anything) is a (capped) ReLU, e.g. ReLU6."""
    if "min" in node.attrs:  # opset < 11
        return float(node.attrs["min"]) == 0.0
    if len(node.inputs) > 1 and node.inputs[1].name:
        value = _constant_value(node.inputs[1])
        return value is not None and value.size == 1 and float(value.reshape(-1)[0]) == 0.0
    return False


def _activation_label(node: gs.Node) -> str | None:
    """The activation a node computes, or None; x·sigmoid(x) reads as Swish at the Mul."""
    if node.op == "Clip":
        return "Clip" if _is_relu_clip(node) else None
    if node.op in ACTIVATIONS:
        if node.op in ("Sigmoid", "HardSigmoid") and _gating_mul(node) is not None:
            return None  # the Mul that follows is the activation
        return node.op
    if node.op == "Mul":
        for operand in node.inputs:
            for producer in operand.inputs:
                if producer.op in ("Sigmoid", "HardSigmoid") and _gating_mul(producer) is node:
                    return "Swish" if producer.op == "Sigmoid" else "HardSwish"
    return None


def _gating_mul(gate: gs.Node) -> gs.Node | None:
    """The Mul computing x·gate(x) for a Sigmoid/HardSigmoid node, if there is one."""
    x = gate.inputs[0]
    for consumer in gate.outputs[0].outputs:
        if consumer.op == "Mul" and any(t is x for t in consumer.inputs):
            return consumer
    return None


_UNIT_PASS_THROUGH = frozenset({"BatchNormalization", "Transpose", "Identity", "Dropout"})


def _unit_output(node: gs.Node, graph_outputs: set[str]) -> gs.Variable:
    """Output of a linear unit: the node's output, extended over what still belongs to the unit: a
    constant bias Add or scale Mul, a BatchNormalization, and layout/identity ops (Transpose, Identity,
    Dropout) as converters put around NHWC convolutions."""
    tensor = node.outputs[0]
    while tensor.name not in graph_outputs and len(tensor.outputs) == 1:
        nxt = tensor.outputs[0]
        affine = nxt.op in ("Add", "Mul") and any(_is_constant(t) for t in nxt.inputs if t is not tensor)
        if not (affine or nxt.op in _UNIT_PASS_THROUGH):
            break
        tensor = nxt.outputs[0]
    return tensor


def _class_score_nodes(graph: gs.Graph, output: str) -> set[int]:
    """ids of the last linear node(s) on every path back from ``output``."""
    start = graph.tensors()[output]
    found, seen, stack = set(), set(), [start]
    while stack:
        tensor = stack.pop()
        if id(tensor) in seen:
            continue
        seen.add(id(tensor))
        for node in tensor.inputs:
            if node.op in LINEAR:
                found.add(id(node))
            else:
                stack.extend(t for t in node.inputs if isinstance(t, gs.Variable))
    return found


def _descendants(nodes: list[gs.Node], roots: set[int]) -> set[int]:
    """ids of ``roots`` and every node downstream of them (``nodes`` in topological order)."""
    reached = set(roots)
    produced: set[int] = set()
    for node in nodes:
        if id(node) in reached or any(id(t) in produced for t in node.inputs):
            reached.add(id(node))
            produced.update(id(t) for t in node.outputs)
    return reached


def _sorted_graph(model: onnx.ModelProto) -> gs.Graph:
    graph = _graph(model)
    graph.toposort()
    return graph


def candidate_layers(model: onnx.ModelProto, output: str) -> list[CandidateTensor]:
    """Tensors holding neurons, in topological order (the rule is in the module docstring)."""
    graph = _sorted_graph(model)
    outputs = {t.name for t in graph.outputs}
    excluded = _descendants(graph.nodes, _class_score_nodes(graph, output))
    found: list[CandidateTensor] = []
    for node in graph.nodes:
        if id(node) in excluded:
            continue
        label = _activation_label(node)
        if label is not None:
            found.append(CandidateTensor(node.outputs[0].name, label))
        elif node.op in LINEAR:
            tensor = _unit_output(node, outputs)
            if not any(_activation_label(c) or c.op in ("Sigmoid", "HardSigmoid") for c in tensor.outputs):
                found.append(CandidateTensor(tensor.name, node.op))
    return found


def upstream_tensors(model: onnx.ModelProto, output: str) -> list[CandidateTensor]:
    """Every intermediate tensor before the class-score layer (``--layers all``), in topological order."""
    graph = _sorted_graph(model)
    excluded = _descendants(graph.nodes, _class_score_nodes(graph, output))
    return [
        CandidateTensor(t.name, node.op)
        for node in graph.nodes if id(node) not in excluded and node.op != "Constant"
        for t in node.outputs if t.dtype is None or np.issubdtype(np.dtype(t.dtype), np.floating)
    ]


def channel_axes(model: onnx.ModelProto, tensors: list[str]) -> dict[str, int]:
    """Axis (batch included) that holds channels, per tensor: 1 for conv-like outputs (ONNX is NCHW),
    followed through Transposes (e.g. the NHWC tensors of converted Keras models)."""
    graph = _graph(model)
    known = graph.tensors()
    return {name: _channel_axis(known[name]) for name in tensors}


def _channel_axis(current: gs.Variable) -> int:
    perms: list[list[int]] = []
    while current.inputs:
        node = current.inputs[0]
        if node.op in _CHANNELS_FIRST:
            break
        if node.op == "Transpose" and "perm" in node.attrs:
            perms.append(list(node.attrs["perm"]))
        elif node.op not in _CHANNEL_PRESERVING:
            break
        variables = [t for t in node.inputs if isinstance(t, gs.Variable)]
        if not variables:
            break
        current = variables[0]
    axis = 1
    for perm in reversed(perms):
        axis = perm.index(axis) if axis in perm else axis
    return axis


def make_batch_dynamic(model: onnx.ModelProto, input_name: str) -> onnx.ModelProto:
    """Return a copy whose batch dimension (axis 0 of input and outputs) is symbolic.

    Reshape targets that spell the fixed batch size as their first entry get 0 (copy the input's
    dimension). The result must be verified by running it; some graphs bake the batch in elsewhere.
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    dim0 = next(i for i in graph.input if i.name == input_name).type.tensor_type.shape.dim[0]
    batch = dim0.dim_value
    for value in list(graph.input) + list(graph.output):
        dims = value.type.tensor_type.shape.dim
        if len(dims) and dims[0].HasField("dim_value") and dims[0].dim_value == batch:
            dims[0].dim_param = "N"
    del graph.value_info[:]
    inits = {i.name: i for i in graph.initializer}
    constants = {n.output[0]: n for n in graph.node if n.op_type == "Constant"}
    for node in graph.node:
        if node.op_type != "Reshape" or len(node.input) < 2:
            continue
        proto = inits.get(node.input[1])
        if proto is None and node.input[1] in constants:
            proto = next((a.t for a in constants[node.input[1]].attribute if a.name == "value"), None)
        if proto is None:
            continue
        shape = onnx.numpy_helper.to_array(proto).copy()
        if shape.ndim == 1 and shape.size > 1 and shape[0] == batch:
            shape[0] = 0
            proto.CopyFrom(onnx.numpy_helper.from_array(shape, proto.name))
    return out


ACTIVITY = "onnxfault__activity"
_NONNEGATIVE = frozenset({"Relu", "Sigmoid", "Softplus", "HardSigmoid"})


def _nonnegative(variable: gs.Variable) -> bool:
    """True when the tensor's producer can only output values ≥ 0."""
    if len(variable.inputs) != 1:
        return False
    node = variable.inputs[0]
    return node.op in _NONNEGATIVE or (node.op == "Clip" and _is_relu_clip(node))


def expose_activity(model: onnx.ModelProto, probes: list[tuple[str, tuple[int, ...]]],
                    threshold: float) -> tuple[onnx.ModelProto, list[int]]:
    """Add one bool output ``onnxfault__activity`` of shape (N, neurons): every probe's neuron values
    compared with ``threshold`` (strictly greater), flattened and concatenated.

    A probe ``(tensor, axes)`` takes the mean of ``tensor`` over ``axes`` (batch-inclusive; they must leave
    (N, C)) as the neuron value, in float64 so that its sign does not depend on summation order; with no
    axes each element is a neuron. For non-negative activations (Relu, ReLU6-style Clip, Sigmoid, …) and
    ``threshold ≤ 0``, ``mean > threshold ⇔ max > threshold`` exactly, and the cheaper float32 ReduceMax
    is used. Probes whose values share a dtype are compared by one node, so the columns come grouped:
    the returned list gives the probe index of each column block, in output order.
    Only this bool matrix leaves onnxruntime, not the activations.
    """
    graph = _graph(model)
    axes_as_input = all(o.version >= 18 for o in model.opset_import if o.domain in ("", "ai.onnx"))
    groups: dict[object, list[tuple[int, gs.Variable]]] = {}
    for i, ((_, axes), value) in enumerate(zip(probes, _lookup(graph, [t for t, _ in probes]))):
        dtype = value.dtype or np.float32
        if axes:
            if not (_nonnegative(value) and threshold <= 0):
                wide = gs.Variable(f"onnxfault__f64_{i}", dtype=np.float64)
                graph.nodes.append(gs.Node("Cast", inputs=[value], outputs=[wide], attrs={"to": onnx.TensorProto.DOUBLE}))
                value, dtype, op = wide, np.float64, "ReduceMean"
            else:
                op = "ReduceMax"
            reduced = gs.Variable(f"onnxfault__value{i}", dtype=dtype)
            if axes_as_input:  # opset 18 moved Reduce* axes from an attribute to an input
                inputs, attrs = [value, gs.Constant(f"onnxfault__axes{i}", np.asarray(axes, np.int64))], {}
            else:
                inputs, attrs = [value], {"axes": list(axes)}
            graph.nodes.append(gs.Node(op, inputs=inputs, outputs=[reduced], attrs={**attrs, "keepdims": 0}))
            value = reduced
        elif value.shape is None or len(value.shape) != 2:  # (N, C, H, W) element probes become (N, C·H·W)
            rows = gs.Variable(f"onnxfault__rows{i}", dtype=dtype)
            graph.nodes.append(gs.Node("Flatten", inputs=[value], outputs=[rows], attrs={"axis": 1}))
            value = rows
        groups.setdefault(np.dtype(dtype), []).append((i, value))
    blocks = []
    for g_index, (dtype, members) in enumerate(groups.items()):
        values = _concat(graph, [v for _, v in members], f"onnxfault__values{g_index}", dtype)
        active = gs.Variable(f"onnxfault__active{g_index}", dtype=np.bool_)
        delta = gs.Constant(f"onnxfault__threshold{g_index}", np.asarray(threshold, dtype))
        graph.nodes.append(gs.Node("Greater", inputs=[values, delta], outputs=[active]))
        blocks.append(active)
    activity = _concat(graph, blocks, ACTIVITY, np.bool_)
    if activity.name != ACTIVITY:
        graph.nodes.append(gs.Node("Identity", inputs=[activity], outputs=[gs.Variable(ACTIVITY, dtype=np.bool_)]))
        activity = graph.nodes[-1].outputs[0]
    graph.outputs.append(activity)
    return _export(graph, model), [i for members in groups.values() for i, _ in members]


def _concat(graph: gs.Graph, tensors: list[gs.Variable], name: str, dtype) -> gs.Variable:
    """``tensors`` joined along axis 1 (the tensor itself when there is only one)."""
    if len(tensors) == 1:
        return tensors[0]
    joined = gs.Variable(name, dtype=dtype)
    graph.nodes.append(gs.Node("Concat", inputs=list(tensors), outputs=[joined], attrs={"axis": 1}))
    return joined


def name_scope_outputs(model: onnx.ModelProto, scope_of: Callable[[str], str | None]) -> onnx.ModelProto:
    """Rename each scope's single output tensor to the scope's name.

    ``scope_of(node_name)`` gives the scope (a framework layer or module) a node belongs to, or None.
    A scope's output is the tensor its nodes produce for nodes outside it; scopes with several such
    tensors, and names already taken, are left alone. Graph inputs and outputs keep their names.
    """
    graph = _graph(model)
    members: dict[str, list[gs.Node]] = {}
    for node in graph.nodes:
        scope = scope_of(node.name) if node.name else None
        if scope:
            members.setdefault(scope, []).append(node)
    fixed = {t.name for t in graph.inputs} | {t.name for t in graph.outputs}
    taken = set(graph.tensors())
    for scope, nodes in members.items():
        inside = {id(n) for n in nodes}
        leaving = {id(t): t for n in nodes for t in n.outputs
                   if t.name in fixed or any(id(c) not in inside for c in t.outputs)}
        if len(leaving) != 1:
            continue
        (tensor,) = leaving.values()
        if tensor.name in fixed or scope in taken:
            continue
        taken.discard(tensor.name)
        tensor.name = scope
        taken.add(scope)
    return _export(graph, model)


def ancestors(model: onnx.ModelProto, tensor: str) -> set[str]:
    """Names of ``tensor`` and every tensor it is computed from."""
    graph = _graph(model)
    (start,) = _lookup(graph, [tensor])
    seen, stack = {start.name}, [start]
    while stack:
        for node in stack.pop().inputs:
            for t in node.inputs:
                if t.name not in seen:
                    seen.add(t.name)
                    stack.append(t)
    return seen


_MONOTONIC = frozenset({"Relu", "LeakyRelu", "PRelu", "Elu", "Selu", "Celu", "Sigmoid", "Tanh", "HardSigmoid",
                        "Softplus", "Softsign", "Clip", "ThresholdedRelu"})


def pre_activations(model: onnx.ModelProto, tensors: list[str]) -> dict[str, str]:
    """For tensors made by an elementwise increasing activation, the activation's input (the unit's
    pre-activation, the output of DeepFault's "trainable layer"); other tensors map to themselves."""
    producers = {o: n for n in model.graph.node for o in n.output}
    out = {}
    for tensor in tensors:
        node = producers.get(tensor)
        out[tensor] = node.input[0] if node is not None and node.op_type in _MONOTONIC else tensor
    return out
