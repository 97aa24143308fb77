"""Which tensors of an ONNX classifier hold neurons, and along which axis.

Candidate neuron layers (``candidate_layers``, ``--layers auto``) follow DeepFault's "trainable layers
except the output layer", read off the ONNX graph:

* the output of every **activation**: an activation node (Relu, LeakyRelu, PRelu, Elu, Selu, Celu, Sigmoid,
  Tanh, HardSigmoid, HardSwish, Softplus, Softsign, ThresholdedRelu, Gelu, Mish, Swish, Clip with min 0 as
  in ReLU6), or a gated activation x·f(x) written out in elementwise ops: a group of elementwise nodes that
  read one tensor only (and constants), read x (that tensor, or one computed in the group, e.g. after a bias
  Add) at least twice, hold an activation op or Erf, and leave the group through one tensor, the activation's
  output — x·sigmoid(x) (SiLU), x·Φ(x) with Erf or its tanh
  approximation (GELU), x·tanh(softplus(x)) (Mish), x·clip(x+3, 0, 6)/6 (HardSwish); the nodes inside are not
  candidates;
* the output of every **linear unit** — a Gemm, MatMul, Conv or ConvTranspose with constant weights (so an
  attention block's products of two activations are not units), extended over a following constant bias Add
  or scale Mul, a BatchNormalization and Transpose/Identity/Dropout — that does not feed an activation;
* the output of every **normalization layer** (LayerNormalization, RMSNormalization, GroupNormalization,
  InstanceNormalization) that does not feed an activation, also when written out (a group as above, holding
  ReduceMean and Sqrt: (x − mean)/√(var + ε)·γ + β, as tf2onnx writes Keras' LayerNormalization);
* minus the class-score layer (the last linear unit before the model output) and everything after it.

The **channel axis** of a tensor (``channel_axes``) is found by walking back through elementwise and layout
ops: axis 1 after a channels-first op (Conv, pooling, BatchNormalization, …), the last axis after a
features-last op (Gemm, MatMul, LayerNormalization: tokens × features in transformers, channels-last
blocks), followed through Transposes.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx

from .graph import is_relu_clip
from .graph_view import GraphView, Node, Tensor, graph_view
from .ops import having

ACTIVATIONS = having("activation")
LINEAR = having("linear")
NORMALIZATIONS = having("normalization")
# Elementwise ops that may make up an activation written out in primitives.
_ELEMENTWISE = ACTIVATIONS | having("elementwise")
# What a written-out activation or normalization may contain: elementwise ops, means, and reshapes of
# its own intermediate values (tf2onnx reshapes the mean of a LayerNormalization before subtracting it).
_LAYOUT = having("layout")
_GROUPABLE = _ELEMENTWISE | _LAYOUT | {"ReduceMean"}
_TAIL = _LAYOUT | {"ReduceMean"}
_CHANNEL_PRESERVING = _ELEMENTWISE | {"Dropout"}
_CHANNELS_FIRST = having("channels_first")
_FEATURES_LAST = having("features_last")
_UNIT_PASS_THROUGH = having("unit_pass_through")


@dataclass(frozen=True)
class CandidateTensor:
    """A tensor that holds neurons, and what produced it (``Swish`` for x·sigmoid(x), ``Gelu`` for an
    activation written with Erf, …)."""

    tensor: str
    op: str


def sorted_graph(model: onnx.ModelProto) -> GraphView:
    """The model as a read-only graph view (:mod:`onnxfault.graph_view`) in topological order: what the
    functions below read, built once per model by their caller."""
    return graph_view(model)


def _constant_tensors(graph: GraphView) -> set[Tensor]:
    """The tensors that do not depend on the graph inputs (``graph`` topologically sorted)."""
    constant = {t for t in graph.tensors.values() if t.initializer is not None}
    for node in graph.nodes:
        if all(t in constant for t in node.inputs if t.name):
            constant.update(node.outputs)
    return constant


@dataclass
class _Function:
    """A function of one tensor, written as one node or as a group: its nodes, the tensor it reads, the one
    it leaves through, what it computes, and whether it is an activation (else a normalization)."""

    nodes: set[Node]
    source: Tensor
    output: Tensor
    label: str
    activation: bool = True


def _is_activation_op(node: Node) -> bool:
    if node.op == "Clip":
        return is_relu_clip(_clip_minimum(node))
    return node.op in ACTIVATIONS or node.op == "Erf"


def _clip_minimum(node: Node):
    """A Clip's min: its attribute (opset < 11), else its second input's value (None when absent or not
    constant)."""
    if "min" in node.attrs:
        return node.attrs["min"]
    return node.inputs[1].value() if len(node.inputs) > 1 and node.inputs[1].name else None


def _activation_label(ops: set[str]) -> str:
    """What a gated activation group x · f(x) with these activation ops computes."""
    if "Erf" in ops or ("Tanh" in ops and "Softplus" not in ops):
        return "Gelu"
    if {"Softplus", "Tanh"} <= ops:
        return "Mish"
    if "Sigmoid" in ops:
        return "Swish"
    if ops & {"HardSigmoid", "Clip", "Relu"}:
        return "HardSwish"
    return sorted(ops)[0]


def _normalization_label(ops: set[str]) -> str | None:
    """(x − mean)/√(var + ε) or x/√(mean(x²) + ε), scaled and shifted: a layer or RMS normalization."""
    if "ReduceMean" in ops and "Sqrt" in ops:
        return "LayerNormalization" if "Sub" in ops else "RMSNormalization"
    return None


def _groups(graph: GraphView, constant: set[Tensor]) -> list[tuple[Tensor, list[Node]]]:
    """Elementwise nodes (and means and reshapes) grouped by the one tensor they are computed from: every
    such node's *root* is the common root of its non-constant inputs, when they share one."""
    root: dict[Tensor, Tensor] = {}
    groups: dict[Tensor, tuple[Tensor, list[Node]]] = {}
    for node in graph.nodes:
        variables = [t for t in node.inputs if t.name and t not in constant]
        roots = {root.get(t, t) for t in variables}
        if node.op in _GROUPABLE and len(roots) == 1:
            (source,) = roots
            groups.setdefault(source, (source, []))[1].append(node)
            for t in node.outputs:
                root[t] = source
    return list(groups.values())


def _without_tail(members: list[Node], outputs: set[Tensor]) -> list[Node]:
    """The group without the layout ops and means at its end: a function's output is what it computes,
    before a reshape that merely follows it or a mean that starts something else (the squeeze-excite pooling
    of an activation's output)."""
    while True:
        inside = set(members)
        tail = [n for n in members if n.op in _TAIL and not any(
            t in outputs or any(c in inside for c in t.consumers) for t in n.outputs)]
        if not tail:
            return members
        cut = set(tail)
        members = [n for n in members if n not in cut]


def _written_out(graph: GraphView, constant: set[Tensor]) -> list[_Function]:
    """The activations of the graph, as single nodes or written out in elementwise ops, and the
    normalizations written out (the rule is in the module docstring)."""
    outputs = set(graph.outputs)
    found = []
    for source, members in _groups(graph, constant):
        members = _without_tail(members, outputs)
        inside = set(members)
        exits = [t for n in members for t in n.outputs
                 if t in outputs or any(c not in inside for c in t.consumers)]
        reads = [t for n in members for t in n.inputs if t.name]
        gated = len(reads) > len(set(reads))  # some tensor of the group is read twice: x · f(x)
        acts = {n.op for n in members if _is_activation_op(n)}
        norm = _normalization_label({n.op for n in members})
        if gated and len(exits) == 1 and acts:
            found.append(_Function(inside, source, exits[0], _activation_label(acts)))
        elif gated and len(exits) == 1 and norm:
            found.append(_Function(inside, source, exits[0], norm, activation=False))
        else:  # a chain (bias, activation, scale): each activation node is a layer of its own
            found += [_Function({n}, n.inputs[0], n.outputs[0], n.op) for n in members if _is_activation_op(n)]
    return found


def _is_linear_unit(node: Node, constant: set[Tensor]) -> bool:
    """A Gemm/MatMul/Conv/ConvTranspose with constant weights."""
    if node.op not in LINEAR:
        return False
    weights = node.inputs[:2] if node.op == "MatMul" else node.inputs[1:2]
    return any(t in constant for t in weights)


def _unit_output(node: Node, graph_outputs: set[str], constant: set[Tensor]) -> Tensor:
    """Output of a linear unit or normalization: the node's output, extended over what still belongs to it:
    a constant bias Add or scale Mul; for a linear unit also a BatchNormalization and layout/identity ops
    (Transpose, Identity, Dropout) as converters put around NHWC convolutions; for torch's GroupNorm (a
    Reshape to groups, InstanceNormalization, a Reshape back, the scale and shift) the Reshape back."""
    if node.op in NORMALIZATIONS:  # its own scale and shift; torch's GroupNorm also reshapes back
        passing = {"Reshape"} if _unit_label(node) == "GroupNormalization" else set()
    else:
        passing = _UNIT_PASS_THROUGH
    tensor = node.outputs[0]
    while tensor.name not in graph_outputs and len(tensor.consumers) == 1:
        nxt = tensor.consumers[0]
        affine = nxt.op in ("Add", "Mul") and any(t in constant for t in nxt.inputs if t is not tensor)
        if not (affine or nxt.op in passing):
            break
        tensor = nxt.outputs[0]
    return tensor


def _unit_label(node: Node) -> str:
    """The unit's op; an InstanceNormalization of a reshaped tensor is how torch writes GroupNorm."""
    source = node.inputs[0].producers[0] if node.inputs and node.inputs[0].producers else None
    if node.op == "InstanceNormalization" and source is not None and source.op == "Reshape":
        return "GroupNormalization"
    return node.op


def _class_score_nodes(graph: GraphView, output: str, constant: set[Tensor]) -> set[Node]:
    """The last linear unit(s) on every path back from ``output``."""
    start = graph.tensors[output]
    found, seen, stack = set(), set(), [start]
    while stack:
        tensor = stack.pop()
        if tensor in seen:
            continue
        seen.add(tensor)
        for node in tensor.producers:
            if _is_linear_unit(node, constant):
                found.add(node)
            else:
                stack.extend(t for t in node.inputs if t.initializer is None)
    return found


def _descendants(nodes: list[Node], roots: set[Node]) -> set[Node]:
    """``roots`` and every node downstream of them (``nodes`` in topological order)."""
    reached = set(roots)
    produced: set[Tensor] = set()
    for node in nodes:
        if node in reached or any(t in produced for t in node.inputs):
            reached.add(node)
            produced.update(node.outputs)
    return reached


def candidate_layers(graph: GraphView, output: str) -> list[CandidateTensor]:
    """Tensors holding neurons in the ``sorted_graph``, in topological order (the rule is in the module
    docstring)."""
    outputs = {t.name for t in graph.outputs}
    constant = _constant_tensors(graph)
    excluded = _descendants(graph.nodes, _class_score_nodes(graph, output, constant))
    functions = _written_out(graph, constant)
    at_exit = {f.output.producers[0]: f for f in functions}
    inside = set().union(*(f.nodes for f in functions)) if functions else set()
    activations = [f for f in functions if f.activation]
    feeds_activation = {f.source for f in activations}
    in_activation = set().union(*(f.nodes for f in activations)) if activations else set()
    found: list[CandidateTensor] = []
    for node in graph.nodes:
        if node in excluded:
            continue
        if node in at_exit:
            found.append(CandidateTensor(at_exit[node].output.name, at_exit[node].label))
        elif node in inside:
            continue
        elif _is_linear_unit(node, constant) or node.op in NORMALIZATIONS:
            tensor = _unit_output(node, outputs, constant)
            if tensor not in feeds_activation and not any(c in in_activation for c in tensor.consumers):
                found.append(CandidateTensor(tensor.name, _unit_label(node)))
    return found


def upstream_tensors(graph: GraphView, output: str) -> list[CandidateTensor]:
    """Every intermediate tensor of the ``sorted_graph`` before the class-score layer (``--layers all``), in
    topological order."""
    excluded = _descendants(graph.nodes, _class_score_nodes(graph, output, _constant_tensors(graph)))
    return [
        CandidateTensor(t.name, node.op)
        for node in graph.nodes if node not in excluded and node.op != "Constant"
        for t in node.outputs if _float_or_undeclared(graph.dtype(t))
    ]


def _float_or_undeclared(dtype) -> bool:
    """A float tensor, or one of undeclared type; not one whose type numpy lacks (bfloat16, float8: an ONNX type
    number here), which a probe could not read."""
    return dtype is None or (not isinstance(dtype, int) and np.issubdtype(np.dtype(dtype), np.floating))


def channel_axes(graph: GraphView, ranks: dict[str, int]) -> dict[str, int]:
    """Axis (batch included) that holds channels, per tensor of the given rank (batch included) of the
    ``sorted_graph``: 1 after channels-first ops, the last after features-last ops, followed through
    Transposes (e.g. the NHWC tensors of converted Keras models)."""
    known, constant = graph.tensors, _constant_tensors(graph)
    return {name: _channel_axis(known[name], rank, constant) for name, rank in ranks.items()}


def _channel_axis(current: Tensor, rank: int, constant: set[Tensor]) -> int:
    perms: list[list[int]] = []
    axis = 1
    while current.producers:
        node = current.producers[0]
        if node.op in _CHANNELS_FIRST:
            break
        if node.op in _FEATURES_LAST:
            axis = rank - 1
            break
        if node.op == "Transpose" and "perm" in node.attrs:
            perms.append(list(node.attrs["perm"]))
        elif node.op not in _CHANNEL_PRESERVING:
            break
        variables = [t for t in node.inputs if t.name and t not in constant]
        if not variables:
            break
        current = variables[0]
    for perm in reversed(perms):
        axis = perm.index(axis) if axis in perm else axis
    return axis


_MONOTONIC = having("monotonic")


def pre_activations(model: onnx.ModelProto, tensors: list[str]) -> dict[str, str]:
    """For tensors made by an elementwise increasing activation, the activation's input (the unit's
    pre-activation, the output of DeepFault's "trainable layer"); other tensors map to themselves."""
    view = graph_view(model)
    out = {}
    for tensor in tensors:
        node = view.producer(tensor)
        out[tensor] = node.inputs[0].name if node is not None and node.op in _MONOTONIC else tensor
    return out

