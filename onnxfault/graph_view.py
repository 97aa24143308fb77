"""The one read model of an ONNX graph (layer discovery, the dense chain, graph surgery's lookups), read straight
from the protobuf: ``producer``, ``consumers``, ``constant`` and ``ancestors`` of a tensor by name.

Nodes come in topological order, tensors know their producers and consumers. It is what
``onnx-graphsurgeon`` would give after ``import_onnx`` and ``toposort`` — same order, same links, same
dtypes — without building an object per initializer and value (~15 µs each). Graphs the protobuf cannot
give simply (nodes out of order, subgraphs, model-local functions, sparse initializers) are imported with
onnx-graphsurgeon and read off its graph instead.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import onnx

_GRAPH = onnx.AttributeProto.GRAPH
# Attribute values as onnx-graphsurgeon reads them (other types it skips).
_ATTRIBUTE = {
    onnx.AttributeProto.FLOAT: lambda a: a.f,
    onnx.AttributeProto.INT: lambda a: a.i,
    onnx.AttributeProto.STRING: lambda a: a.s.decode(),
    onnx.AttributeProto.TENSOR: lambda a: a.t,
    _GRAPH: lambda a: a.g,
    onnx.AttributeProto.FLOATS: lambda a: list(a.floats),
    onnx.AttributeProto.INTS: lambda a: list(a.ints),
    onnx.AttributeProto.STRINGS: lambda a: [s.decode() for s in a.strings],
}
# ONNX types that onnx-graphsurgeon keeps as ONNX type numbers instead of numpy dtypes.
_NOT_NUMPY = frozenset({onnx.TensorProto.BFLOAT16, onnx.TensorProto.FLOAT8E4M3FN, onnx.TensorProto.FLOAT8E4M3FNUZ,
                        onnx.TensorProto.FLOAT8E5M2, onnx.TensorProto.FLOAT8E5M2FNUZ})


class Tensor:
    """A named value: the nodes that write it (``producers``; more than one only in malformed graphs) and
    read it (``consumers``, once per input slot), and for an initializer its ``TensorProto``."""

    __slots__ = ("name", "producers", "consumers", "initializer")

    def __init__(self, name: str, initializer=None):
        self.name = name
        self.producers: list[Node] = []
        self.consumers: list[Node] = []
        self.initializer = initializer

    def value(self) -> np.ndarray | None:
        """The value of an initializer, or of a Constant node's ``value``; None for any other tensor."""
        if self.initializer is not None:
            return _array(self.initializer)
        if len(self.producers) == 1 and self.producers[0].op == "Constant":
            value = self.producers[0].attrs.get("value")
            return None if value is None else _array(value)
        return None


class Node:
    """An operator: its op type, input and output tensors (an omitted optional one is a fresh tensor named
    ``""``), and its attributes, read on first use."""

    __slots__ = ("op", "name", "inputs", "outputs", "_attributes", "_attrs")

    def __init__(self, op: str, attributes, attrs: dict | None = None, name: str = ""):
        self.op = op
        self.name = name
        self.inputs: list[Tensor] = []
        self.outputs: list[Tensor] = []
        self._attributes = attributes
        self._attrs = attrs

    @property
    def attrs(self) -> dict:
        if self._attrs is None:
            self._attrs = {a.name: _ATTRIBUTE[a.type](a) for a in self._attributes if a.type in _ATTRIBUTE}
        return self._attrs


class GraphView:
    """Nodes in topological order, the graph outputs, the named tensors, and their dtypes (``dtype``)."""

    __slots__ = ("nodes", "outputs", "tensors", "_read_dtypes", "_dtypes")

    def __init__(self, nodes: list[Node], outputs: list[Tensor], tensors: dict[str, Tensor],
                 read_dtypes: Callable[[], dict[str, object]]):
        self.nodes = nodes
        self.outputs = outputs
        self.tensors = tensors
        self._read_dtypes = read_dtypes
        self._dtypes: dict[str, object] | None = None

    def dtype(self, tensor: Tensor):
        """The tensor's declared element type as a numpy dtype (the ONNX type number where numpy has none),
        None when undeclared."""
        if self._dtypes is None:
            self._dtypes = self._read_dtypes()
        return self._dtypes.get(tensor.name) if tensor.name else None

    def producer(self, name: str) -> Node | None:
        """The node that computes the tensor ``name``; None for an input, an initializer or an unknown name."""
        found = self.tensors.get(name)
        return found.producers[0] if found is not None and found.producers else None

    def consumers(self, name: str) -> list[Node]:
        """The nodes that read the tensor ``name`` (once per input slot)."""
        found = self.tensors.get(name)
        return list(found.consumers) if found is not None else []

    def constant(self, name: str) -> np.ndarray | None:
        """The value of an initializer or a Constant node's output; None for any other tensor."""
        found = self.tensors.get(name)
        return found.value() if found is not None else None

    def ancestors(self, name: str) -> set[str]:
        """The names of ``name`` and of every tensor it is computed from."""
        seen, stack = {name}, [name]
        while stack:
            node = self.producer(stack.pop())
            for t in node.inputs if node is not None else ():
                if t.name and t.name not in seen:
                    seen.add(t.name)
                    stack.append(t.name)
        return seen


def graph_view(model: onnx.ModelProto) -> GraphView:
    """The model's graph as a view in the order onnx-graphsurgeon's ``toposort`` gives: nodes stably sorted by
    depth (0 when no node feeds it, else one more than its deepest producer)."""
    return _read(model) or _read_through_graphsurgeon(model)


def _read(model: onnx.ModelProto) -> GraphView | None:
    """The view from the protobuf; None when the graph needs onnx-graphsurgeon (see the module docstring)."""
    graph = model.graph
    if model.functions or graph.sparse_initializer:
        return None
    initializers = {i.name: i for i in graph.initializer}
    tensors: dict[str, Tensor] = {}

    def tensor(name: str) -> Tensor:
        found = tensors.get(name)
        if found is None:
            if not name:  # an omitted optional input or output: linked to nothing
                return Tensor(name)
            found = tensors[name] = Tensor(name, initializers.get(name))
        return found

    if "" in initializers or not all(v.name for v in (*graph.input, *graph.output, *graph.value_info)):
        return None  # a declared empty name: onnx-graphsurgeon would share it between all omitted tensors
    for value in graph.input:
        if value.name not in initializers:
            tensor(value.name)
    outputs = [tensor(value.name) for value in graph.output]
    nodes = []
    for proto in graph.node:
        if proto.attribute and any(a.type == _GRAPH for a in proto.attribute):
            return None
        node = Node(proto.op_type, proto.attribute, name=proto.name)
        for name in proto.input:
            t = tensor(name)
            node.inputs.append(t)
            t.consumers.append(node)
        for name in proto.output:
            t = tensor(name)
            node.outputs.append(t)
            t.producers.append(node)
        nodes.append(node)
    levels = _levels(nodes)
    if levels is None:
        return None
    nodes.sort(key=lambda node: levels[id(node)])
    return GraphView(nodes, outputs, tensors, lambda: _declared_dtypes(graph))


def _levels(nodes: list[Node]) -> dict[int, int] | None:
    """Each node's depth, by id, when the nodes are in topological order (ONNX requires it); else None."""
    levels: dict[int, int] = {}
    for node in nodes:
        level = 0
        for t in node.inputs:
            for producer in t.producers:
                if id(producer) not in levels:
                    return None
                level = max(level, levels[id(producer)] + 1)
        levels[id(node)] = level
    return levels


def _declared_dtypes(graph: onnx.GraphProto) -> dict[str, object]:
    """Element types as onnx-graphsurgeon's import sets them: an initializer's own; else the first declaration
    (value_info, then inputs, then outputs), which a later value_info fills in only when it gave none."""
    dtypes = {i.name: _numpy_dtype(i.data_type) for i in graph.initializer}
    initializers = set(dtypes)
    for value in graph.value_info:
        if value.name in initializers:
            continue
        declared = _value_dtype(value)
        dtypes[value.name] = (dtypes[value.name] or declared) if value.name in dtypes else declared
    for value in (*graph.input, *graph.output):
        dtypes.setdefault(value.name, _value_dtype(value))
    return dtypes


def _value_dtype(value: onnx.ValueInfoProto):
    kind = value.type
    if kind.ByteSize() == 0:
        return None
    which = kind.WhichOneof("value")
    if which == "tensor_type":
        return _numpy_dtype(kind.tensor_type.elem_type)
    if which == "sequence_type":
        return _numpy_dtype(kind.sequence_type.elem_type.tensor_type.elem_type)
    if which == "map_type":
        return _numpy_dtype(kind.map_type.value_type)
    if which == "optional_type":
        return _numpy_dtype(kind.optional_type.elem_type)
    if which == "sparse_tensor_type":
        return _numpy_dtype(kind.sparse_tensor_type.elem_type)
    return _numpy_dtype(kind.opaque_type)


def _numpy_dtype(elem_type):
    if isinstance(elem_type, int) and elem_type not in _NOT_NUMPY and elem_type in onnx.helper.get_all_tensor_dtypes():
        return onnx.helper.tensor_dtype_to_np_dtype(elem_type)
    return elem_type


def _array(value) -> np.ndarray:
    """A ``TensorProto``'s value, or an onnx-graphsurgeon Constant's."""
    if isinstance(value, onnx.TensorProto):
        return onnx.numpy_helper.to_array(value)
    return np.asarray(value.values)


def _read_through_graphsurgeon(model: onnx.ModelProto) -> GraphView:
    """The view read off onnx-graphsurgeon's import, topologically sorted (recursing into subgraphs and
    functions). Subgraph nodes that read the graph's tensors are among those tensors' consumers, as there."""
    import onnx_graphsurgeon as gs

    graph = gs.import_onnx(model)
    graph.toposort()
    tensors: dict[int, Tensor] = {}
    nodes: dict[int, Node] = {}
    pending: list = []

    def tensor(t) -> Tensor:
        if id(t) not in tensors:
            tensors[id(t)] = Tensor(t.name, t if isinstance(t, gs.Constant) else None)
            pending.append(t)
        return tensors[id(t)]

    def node(n) -> Node:
        if id(n) not in nodes:
            nodes[id(n)] = Node(n.op, None, n.attrs, n.name or "")
            pending.append(n)
        return nodes[id(n)]

    named = graph.tensors()
    view = GraphView([node(n) for n in graph.nodes], [tensor(t) for t in graph.outputs],
                     {name: tensor(t) for name, t in named.items()},
                     lambda: {name: t.dtype for name, t in named.items()})
    while pending:
        item = pending.pop()
        if isinstance(item, gs.Node):
            nodes[id(item)].inputs = [tensor(t) for t in item.inputs]
            nodes[id(item)].outputs = [tensor(t) for t in item.outputs]
        else:
            tensors[id(item)].producers = [node(n) for n in item.inputs]
            tensors[id(item)].consumers = [node(n) for n in item.outputs]
    return view
