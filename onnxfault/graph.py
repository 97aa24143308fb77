"""Graph surgery on ONNX models with onnx-graphsurgeon.

Every function takes a ``ModelProto`` and returns a new one; the caller's model is never edited. Which
tensors hold neurons is decided in :mod:`onnxfault.layers`. The two edits made on every ``localize`` and
``evaluate`` (``expose_activity``, ``prepend_preprocessing``) only add nodes that read existing tensors, and
append them to a copy of the protobuf directly: a graph import and export would cost more than the rest.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from .errors import OnnxFaultError, close_matches_hint
from .graph_view import GraphView, graph_view
from .ops import having


def read_graph(model: onnx.ModelProto) -> gs.Graph:
    """The model as an onnx-graphsurgeon graph (a copy: edits do not reach the model)."""
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
    """Fail with close matches when a name is not a variable tensor of ``model`` (a graph input that is not an
    initializer, or a node's output), read from the protobuf: no graph import."""
    initializers = {i.name for i in model.graph.initializer}
    variables = [i.name for i in model.graph.input if i.name not in initializers] + \
        [o for n in model.graph.node for o in n.output]
    known = set(variables)
    for name in names:
        if name not in known:
            raise OnnxFaultError(close_matches_hint(name, variables, "tensor") + " (see `onnxfault inspect`)")


def _as_output(tensor: gs.Variable) -> gs.Variable:
    if tensor.dtype is None:
        tensor.dtype = np.float32
    return tensor


def expose_outputs(model: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    """Return a copy of ``model`` whose outputs are its own outputs followed by the tensors ``names``."""
    graph = read_graph(model)
    present = {t.name for t in graph.outputs}
    for tensor in _lookup(graph, list(names)):
        if tensor.name not in present:
            graph.outputs.append(_as_output(tensor))
            present.add(tensor.name)
    return _export(graph, model)


def cut_at(model: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    """Return the sub-model from the input up to the tensors ``names`` (its only outputs)."""
    graph = read_graph(model)
    graph.outputs = [_as_output(t) for t in _lookup(graph, list(names))]
    graph.cleanup(remove_unused_graph_inputs=False).toposort()
    return _export(graph, model)


def start_at(model: onnx.ModelProto, name: str) -> onnx.ModelProto:
    """Return the sub-model from the tensor ``name`` on: ``name`` becomes its first input (fed instead of
    computed), followed by the model's own inputs that are still needed (e.g. a text model's attention mask when
    it starts at the token embeddings); what only computed ``name`` is dropped. The mirror of :func:`cut_at`."""
    graph = read_graph(model)
    (tensor,) = _lookup(graph, [name])
    if tensor in graph.inputs:
        return model
    tensor.inputs.clear()  # no longer computed: fed
    graph.inputs = [tensor, *[i for i in graph.inputs if i is not tensor]]
    graph.cleanup(remove_unused_graph_inputs=True).toposort()
    if not graph.inputs or graph.inputs[0] is not tensor:
        raise OnnxFaultError(f"tensor '{name}' does not lead to the model's outputs; start at a tensor they depend on")
    return _export(graph, model)


def flattened_name(name: str) -> str:
    return f"{name}__scores"


def flatten_output(model: onnx.ModelProto, name: str) -> onnx.ModelProto:
    """A copy with one more output, ``flattened_name(name)``: the output ``name`` flattened to (N, rest)."""
    graph = read_graph(model)
    (tensor,) = [t for t in graph.outputs if t.name == name]
    flat = gs.Variable(flattened_name(name), dtype=tensor.dtype or np.float32)
    graph.nodes.append(gs.Node("Flatten", inputs=[tensor], outputs=[flat], attrs={"axis": 1}))
    graph.outputs.append(flat)
    return _export(graph, model)


RESHAPING = having("reshaping")


def producing_op(model: onnx.ModelProto, tensor: str, through: frozenset[str] = frozenset()) -> str | None:
    """The op type that computes ``tensor``, looking back through the ops in ``through``; None for an
    input or initializer."""
    view = graph_view(model)
    node = view.producer(tensor)
    while node is not None and node.op in through and node.inputs:
        node = view.producer(node.inputs[0].name)
    return None if node is None else node.op


_INDEX_PASSING = having("index_passing")


_FLOAT_TABLES = frozenset({onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16})


def embedding_lookups(view: GraphView, input_name: str) -> list[tuple[str, str, int]]:
    """The embedding lookups of an integer input, read off the model's :class:`~onnxfault.graph_view.GraphView`:
    ``(output, table, rows)`` of each Gather on axis 0 whose data is a 2-D float initializer (``table``, ``rows`` ×
    width) and whose indices are ``input_name``, maybe through Cast, Reshape and the like. A text model's token ids
    have one (word embeddings)."""
    found, frontier, seen = [], [view.tensors[input_name]], set()
    while frontier:
        tensor = frontier.pop()
        for node in dict.fromkeys(tensor.consumers):  # a node reading the tensor twice is seen once
            table = node.inputs[0].initializer if node.inputs else None
            if node.op == "Gather" and len(node.inputs) == 2 and node.inputs[1] is tensor and table is not None \
                    and len(table.dims) == 2 and table.data_type in _FLOAT_TABLES and node.attrs.get("axis", 0) == 0:
                found.append((node.outputs[0].name, table.name, int(table.dims[0])))
            elif node.op in _INDEX_PASSING and node.inputs[0] is tensor and node.outputs[0].name not in seen:
                seen.add(node.outputs[0].name)
                frontier.append(node.outputs[0])
    return found


def embedding_rows(view: GraphView, input_name: str) -> int | None:
    """The rows of the smallest embedding table an integer input looks up (its ids must lie below), or None."""
    rows = [r for _, _, r in embedding_lookups(view, input_name)]
    return min(rows) if rows else None


MASK = "onnxfault__mask"


def insert_masks(model: onnx.ModelProto, probes: list[tuple[str, tuple[int, ...], int]]) -> onnx.ModelProto:
    """Add a float input ``onnxfault__mask`` of shape (N, neurons) multiplied into each probed tensor.

    A probe ``(tensor, shape, channel_axis)`` gives the tensor's per-sample ``shape`` and the axis (per
    sample) that indexes its neurons, or None when every element is a neuron. Its mask columns (in probe
    order) are reshaped to broadcast over the other axes; every consumer of the tensor then reads the
    masked tensor, so a 0 in the mask zeroes that neuron for that row.
    """
    graph = read_graph(model)
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


def is_relu_clip(minimum) -> bool:
    """Clip(min=0, max=anything) is a (capped) ReLU, e.g. ReLU6: ``minimum`` is the Clip's min (its attribute
    before opset 11, else its second input's value; None when absent or not constant), exactly 0."""
    return minimum is not None and np.size(minimum) == 1 and float(np.reshape(minimum, -1)[0]) == 0.0


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
VALUES = "onnxfault__values"
_NONNEGATIVE = having("nonnegative")


TOKEN_RULES = ("any", "mean", "cls")


def expose_values(model: onnx.ModelProto, probes: list[tuple[str, tuple[int, ...]]],
                  tokens: dict[int, tuple[str, str | None]] | None = None) -> tuple[onnx.ModelProto, list[int]]:
    """Add one float64 output ``onnxfault__values`` of shape (N, neurons): every probe's neuron values as
    :func:`expose_activity` defines them (channel means in float64, the token rules), flattened and
    concatenated; the returned list gives the probe index of each column block, in output order."""
    return expose_activity(model, probes, None, tokens)


def expose_activity(model: onnx.ModelProto, probes: list[tuple[str, tuple[int, ...]]],
                    threshold: float | None, tokens: dict[int, tuple[str, str | None]] | None = None
                    ) -> tuple[onnx.ModelProto, list[int]]:
    """Add one bool output ``onnxfault__activity`` of shape (N, neurons): every probe's neuron values
    compared with ``threshold`` (strictly greater), flattened and concatenated.

    A probe ``(tensor, axes)`` takes the mean of ``tensor`` over ``axes`` (batch-inclusive; they must leave
    (N, C)) as the neuron value, in float64 so that its sign does not depend on summation order; with no
    axes each element is a neuron. For non-negative activations (Relu, ReLU6-style Clip, Sigmoid, …) and
    ``threshold ≤ 0``, ``mean > threshold ⇔ max > threshold`` exactly, and the cheaper float32 ReduceMax
    is used. Probes whose values share a dtype are compared by one node, so the columns come grouped:
    the returned list gives the probe index of each column block, in output order.
    Only this bool matrix leaves onnxruntime, not the activations.

    ``tokens`` maps a probe of a (N, T, H) tensor of a text model to its token rule and attention-mask input
    (None: every token is real): ``any`` takes the max over real tokens, ``mean`` their mean (in float64),
    ``cls`` the first token; with no axes (element granularity) a padding position is never active.

    Appends nodes to a copy of the protobuf (no graph import: this runs once per command, and the nodes only
    read existing tensors).
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    require_tensors(out, [t for t, _ in probes])
    types = {v.name: v.type.tensor_type for v in [*graph.input, *graph.value_info, *graph.output]}
    producers = {o: n for n in graph.node for o in n.output}
    opset = min((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    axes_as_input = opset >= 18

    def emit(op: str, inputs: list[str], output: str, **attrs) -> str:
        graph.node.append(onnx.helper.make_node(op, inputs, [output], **attrs))
        return output

    def constant(name: str, value: np.ndarray) -> str:
        graph.initializer.append(onnx.numpy_helper.from_array(value, name))
        return name

    def reduce(op: str, value: str, axes: tuple[int, ...], output: str, keepdims: int = 0) -> str:
        # opset 18 moved Reduce* axes from an attribute to an input (ReduceSum moved at 13)
        if axes_as_input or (op == "ReduceSum" and opset >= 13):
            return emit(op, [value, constant(f"{output}_axes", np.asarray(axes, np.int64))], output, keepdims=keepdims)
        return emit(op, [value], output, axes=list(axes), keepdims=keepdims)

    def real_tokens(i: int, mask: str, width_axis: bool) -> str:
        """The attention mask as bool (N, T), or (N, T, 1) with ``width_axis``."""
        real = emit("Cast", [mask], f"onnxfault__real{i}", to=onnx.TensorProto.BOOL)
        if not width_axis:
            return real
        if opset >= 13:
            return emit("Unsqueeze", [real, constant(f"onnxfault__last{i}", np.asarray([2], np.int64))],
                        f"onnxfault__real3_{i}")
        return emit("Unsqueeze", [real], f"onnxfault__real3_{i}", axes=[2])

    def padding_below_all(i: int, tensor: str, dtype: np.dtype, mask: str | None) -> str:
        """``tensor`` with its padding positions at -inf, which no threshold is below (as is, without a mask)."""
        if mask is None:
            return tensor
        return emit("Where", [real_tokens(i, mask, True), tensor, constant(f"onnxfault__pad{i}", np.asarray(-np.inf, dtype))],
                    f"onnxfault__masked{i}")

    def token_value(i: int, tensor: str, dtype: np.dtype, axes: tuple[int, ...], rule: str, mask: str | None):
        """The neuron values of a (N, T, H) probe under a token rule, and their dtype."""
        if not axes:  # element granularity: a padding position is never active
            return emit("Flatten", [padding_below_all(i, tensor, dtype, mask)], f"onnxfault__rows{i}", axis=1), dtype
        if rule == "cls":
            return emit("Gather", [tensor, constant(f"onnxfault__first{i}", np.asarray(0, np.int64))],
                        f"onnxfault__value{i}", axis=1), dtype
        if rule == "any":
            return reduce("ReduceMax", padding_below_all(i, tensor, dtype, mask), axes, f"onnxfault__value{i}"), dtype
        wide = emit("Cast", [tensor], f"onnxfault__f64_{i}", to=onnx.TensorProto.DOUBLE)
        if mask is None:
            return reduce("ReduceMean", wide, axes, f"onnxfault__value{i}"), np.dtype(np.float64)
        weights = emit("Cast", [real_tokens(i, mask, True)], f"onnxfault__w{i}", to=onnx.TensorProto.DOUBLE)
        total = reduce("ReduceSum", emit("Mul", [wide, weights], f"onnxfault__xw{i}"), axes, f"onnxfault__sum{i}")
        count = reduce("ReduceSum", weights, axes, f"onnxfault__count{i}")  # (N, 1): real tokens per sample
        return emit("Div", [total, count], f"onnxfault__value{i}"), np.dtype(np.float64)

    groups: dict[np.dtype, list[tuple[int, str]]] = {}
    for i, (tensor, axes) in enumerate(probes):
        known = types.get(tensor)
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(known.elem_type)) if known and known.elem_type \
            else np.dtype(np.float32)
        value = tensor
        if tokens and i in tokens:
            value, dtype = token_value(i, tensor, dtype, axes, *tokens[i])
        elif axes:
            op = "ReduceMax"
            if threshold is None or not (_nonnegative(graph, producers.get(tensor)) and threshold <= 0):
                value, dtype, op = emit("Cast", [value], f"onnxfault__f64_{i}", to=onnx.TensorProto.DOUBLE), \
                    np.dtype(np.float64), "ReduceMean"
            value = reduce(op, value, axes, f"onnxfault__value{i}")
        elif known is None or not known.HasField("shape") or len(known.shape.dim) != 2:
            value = emit("Flatten", [value], f"onnxfault__rows{i}", axis=1)  # (N, C, H, W) → (N, C·H·W)
        groups.setdefault(dtype, []).append((i, value))
    if threshold is None:  # the values themselves, all as float64
        values = [emit("Cast", [v], f"onnxfault__f64v{i}", to=onnx.TensorProto.DOUBLE) for i, v in
                  ((i, v) for members in groups.values() for i, v in members)]
        emit("Concat", values, VALUES, axis=1) if len(values) > 1 else emit("Identity", values, VALUES)
        graph.output.append(onnx.helper.make_tensor_value_info(VALUES, onnx.TensorProto.DOUBLE, None))
        return out, [i for members in groups.values() for i, _ in members]
    blocks = []
    for g_index, (dtype, members) in enumerate(groups.items()):
        values = [v for _, v in members]
        joined = values[0] if len(values) == 1 else emit("Concat", values, f"onnxfault__values{g_index}", axis=1)
        delta = constant(f"onnxfault__threshold{g_index}", np.asarray(threshold, dtype))
        blocks.append(emit("Greater", [joined, delta], ACTIVITY if len(groups) == 1 else f"onnxfault__active{g_index}"))
    if len(blocks) > 1:
        emit("Concat", blocks, ACTIVITY, axis=1)
    graph.output.append(onnx.helper.make_tensor_value_info(ACTIVITY, onnx.TensorProto.BOOL, None))
    return out, [i for members in groups.values() for i, _ in members]


def _nonnegative(graph: onnx.GraphProto, node: onnx.NodeProto | None) -> bool:
    """True when ``node`` (a tensor's producer) can only output values ≥ 0: a ReLU-like op, or a Clip with
    min 0 (see ``is_relu_clip``)."""
    if node is None:
        return False
    if node.op_type != "Clip":
        return node.op_type in _NONNEGATIVE
    for attribute in node.attribute:  # opset < 11
        if attribute.name == "min":
            return is_relu_clip(attribute.f)
    if len(node.input) < 2 or not node.input[1]:
        return False
    value = next((onnx.numpy_helper.to_array(i) for i in graph.initializer if i.name == node.input[1]), None)
    for constant in (n for n in graph.node if n.op_type == "Constant" and n.output[0] == node.input[1]):
        value = next((onnx.numpy_helper.to_array(a.t) for a in constant.attribute if a.name == "value"), None)
    return is_relu_clip(value)


def name_scope_outputs(model: onnx.ModelProto, scope_of: Callable[[str], str | None]) -> onnx.ModelProto:
    """Rename each scope's single output tensor to the scope's name.

    ``scope_of(node_name)`` gives the scope (a framework layer or module) a node belongs to, or None.
    A scope's output is the tensor its nodes produce for nodes outside it (a node in a subgraph is outside
    every scope); scopes with several such tensors, and names already taken, are left alone. Graph inputs and
    outputs keep their names. Works on the protobuf: attributes are never decoded (tf2onnx can leave string
    attributes that are not UTF-8, which a graph import refuses).
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    members: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        scope = scope_of(node.name) if node.name else None
        if scope:
            members.setdefault(scope, []).append(node)
    consumers: dict[str, list[int]] = {}
    for node in _nodes_within(graph):
        for name in node.input:
            consumers.setdefault(name, []).append(id(node))
    fixed = {t.name for t in graph.input} | {t.name for t in graph.output}
    taken = fixed | {i.name for i in graph.initializer} | {t for n in _nodes_within(graph) for t in [*n.input, *n.output]}
    renamed: dict[str, str] = {}
    for scope, nodes in members.items():
        inside = {id(n) for n in nodes}
        leaving = list(dict.fromkeys(t for n in nodes for t in n.output if t and (
            t in fixed or any(c not in inside for c in consumers.get(t, [])))))
        if len(leaving) != 1 or leaving[0] in fixed or scope in taken:
            continue
        taken.discard(leaving[0])
        taken.add(scope)
        renamed[leaving[0]] = scope
    for node in _nodes_within(graph):
        node.input[:] = [renamed.get(n, n) for n in node.input]
        node.output[:] = [renamed.get(n, n) for n in node.output]
    for value in graph.value_info:
        value.name = renamed.get(value.name, value.name)
    return out


def _nodes_within(graph: onnx.GraphProto):
    """Every node of ``graph`` and of the subgraphs in its nodes' attributes, depth first."""
    for node in graph.node:
        yield node
        for attribute in node.attribute:
            for sub in ([attribute.g] if attribute.type == onnx.AttributeProto.GRAPH else
                        attribute.graphs if attribute.type == onnx.AttributeProto.GRAPHS else []):
                yield from _nodes_within(sub)


def ancestors(model: onnx.ModelProto, tensor: str) -> set[str]:
    """Names of ``tensor`` and every tensor it is computed from (read off the model's :class:`GraphView`)."""
    require_tensors(model, [tensor])
    return graph_view(model).ancestors(tensor)


RAW_INPUT = "onnxfault__raw"


def prepend_preprocessing(model: onnx.ModelProto, input_name: str, raw_dtype: np.dtype, divisor: float = 1.0,
                          mean: np.ndarray | None = None, std: np.ndarray | None = None) -> onnx.ModelProto:
    """A copy of ``model`` whose input is ``onnxfault__raw``, samples as read (``raw_dtype``, the model input's
    shape), turned into the model's input ``input_name`` inside the graph: Cast to float32, ``/ divisor``
    (unless 1), ``- mean``, ``/ std`` (arrays that broadcast over a batch), all in float32 as numpy computes
    ``x.astype(float32) / divisor``, then a Cast to the input's own float type when that is not float32.

    Edits the protobuf directly (no graph import: this runs once per command and must cost next to nothing);
    the original input tensor keeps its name and is now computed, so no node is rewired. The ops run
    element-wise in IEEE float32, so the model sees bit-for-bit what the numpy path feeds it, provided the
    session does not fold the scaling into the next op (``runtime.Session`` turns off MatMulScaleFusion).
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    (value,) = [i for i in graph.input if i.name == input_name]
    model_type = value.type.tensor_type.elem_type
    raw = onnx.ValueInfoProto()
    raw.CopyFrom(value)
    raw.name = RAW_INPUT
    raw.type.tensor_type.elem_type = onnx.helper.np_dtype_to_tensor_dtype(np.dtype(raw_dtype))
    graph.input.remove(value)
    graph.input.insert(0, raw)
    steps = [("Div", np.asarray(divisor, np.float32))] if divisor != 1.0 else []
    steps += [(op, np.asarray(v, np.float32)) for op, v in (("Sub", mean), ("Div", std)) if v is not None]
    nodes: list[onnx.NodeProto] = []

    def emit(op: str, inputs: list[str], **attrs) -> str:
        name = f"onnxfault__pre{len(nodes)}"
        nodes.append(onnx.helper.make_node(op, inputs, [name], **attrs))
        return name

    current = RAW_INPUT
    if np.dtype(raw_dtype) != np.float32:
        current = emit("Cast", [current], to=onnx.TensorProto.FLOAT)
    for op, operand in steps:
        current = emit(op, [current, emit("Constant", [], value=onnx.numpy_helper.from_array(operand))])
    if model_type != onnx.TensorProto.FLOAT or current == RAW_INPUT:
        emit("Cast", [current], to=model_type)
    nodes[-1].output[0] = input_name  # the last step computes the model's own input tensor
    for node in reversed(nodes):
        graph.node.insert(0, node)
    return out


def with_initializers(model: onnx.ModelProto, values: dict[str, np.ndarray]) -> onnx.ModelProto:
    """A copy of ``model`` whose initializers named in ``values`` hold those values (cast to each one's own type);
    nothing else changes."""
    from onnx import numpy_helper

    out = onnx.ModelProto()
    out.CopyFrom(model)
    missing = set(values) - {i.name for i in out.graph.initializer}
    if missing:
        raise OnnxFaultError(f"the graph has no initializer {sorted(missing)[0]!r}")
    for i, init in enumerate(out.graph.initializer):
        if init.name in values:
            old = numpy_helper.to_array(init)
            new = np.asarray(values[init.name]).astype(old.dtype)
            if new.shape != old.shape:
                raise OnnxFaultError(f"initializer {init.name!r} has shape {old.shape}; the new value {new.shape}")
            out.graph.initializer[i].CopyFrom(numpy_helper.from_array(new, init.name))
    return out
