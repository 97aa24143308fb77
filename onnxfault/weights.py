"""The weights a graph learns, read off its ONNX graph: the float initializers of Conv, ConvTranspose, Gemm and
MatMul (kernels and biases, an Add of a constant after them included), BatchNormalization's scale and shift and
PRelu's slope — never BatchNormalization's running statistics, a Clip bound or a shape. Each weight has an axis
along which its slices feed the output channels; the weights that feed a layer are found by walking back from it
through activations, normalisations and bias additions to the weighted op that computes it."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx

from .graph_view import graph_view
from .model import Layer

_THROUGH = {"Relu", "LeakyRelu", "Elu", "Selu", "Sigmoid", "Tanh", "Clip", "HardSigmoid", "Softplus", "Gelu",
            "HardSwish", "Mish", "Identity", "Dropout", "BatchNormalization", "PRelu", "Add"}
_WEIGHTED = {"Conv", "ConvTranspose", "Gemm", "MatMul"}


@dataclass(frozen=True)
class Weight:
    """A learned float initializer and the axis of its output channels."""

    name: str
    axis: int


def learned_weights(proto: onnx.ModelProto) -> dict[str, Weight]:
    """Every learned weight of the graph, by initializer name, in graph order."""
    view = graph_view(proto)
    found: dict[str, Weight] = {}
    for node in view.nodes:
        for name, axis in _node_weights(view, node):
            found.setdefault(name, Weight(name, axis))
    return found


def feeding(proto: onnx.ModelProto, layer: str) -> list[Weight]:
    """The learned weights that compute the layer tensor ``layer``: its weighted op's kernel and bias and what
    lies between that op and the layer (a bias Add, BatchNormalization, PRelu); none when no weighted op
    computes it."""
    view = graph_view(proto)
    learned = learned_weights(proto)
    out: list[Weight] = []
    node = view.producer(layer)
    while node is not None:
        mine = [learned[name] for name, _ in _node_weights(view, node) if name in learned]
        out += [w for w in mine if w not in out]
        if node.op in _WEIGHTED:
            return out
        if node.op not in _THROUGH:
            return []
        moving = [t.name for t in node.inputs if t.name and view.constant(t.name) is None]
        if len(moving) != 1:
            return []
        node = view.producer(moving[0])
    return []


def channel_of(layer: Layer, index: int, granularity: str) -> int:
    """The output channel of neuron ``index`` of ``layer`` at ``granularity``."""
    if granularity == "channel" or layer.channel_axis is None:
        return int(index)
    return int(np.unravel_index(int(index), layer.shape)[layer.channel_axis])


def _node_weights(view, node) -> list[tuple[str, int]]:
    """(initializer, output-channel axis) of the float initializers ``node`` learns."""
    names = [t.name for t in node.inputs]

    def initializer(i: int) -> np.ndarray | None:
        if i >= len(names) or not names[i]:
            return None
        tensor = view.tensors.get(names[i])
        if tensor is None or tensor.initializer is None:
            return None
        value = tensor.value()
        return value if value.dtype.kind == "f" else None

    picked: list[tuple[int, int]] = []
    if node.op == "Conv":
        picked = [(1, 0), (2, 0)]
    elif node.op == "ConvTranspose":
        picked = [(1, 1), (2, 0)]
    elif node.op == "Gemm":
        picked = [(1, 0 if node.attrs.get("transB", 0) else 1), (2, -1)]
    elif node.op == "MatMul":
        picked = [(1, -1)]
    elif node.op in ("BatchNormalization",):
        picked = [(1, 0), (2, 0)]
    elif node.op == "PRelu":
        picked = [(1, 0)]
    elif node.op == "Add":
        sources = [view.producer(n) for n in names if n and view.constant(n) is None]
        if len(sources) == 1 and sources[0] is not None and sources[0].op in _WEIGHTED:
            picked = [(i, -1) for i in range(len(names)) if initializer(i) is not None]
    out = []
    for i, axis in picked:
        value = initializer(i)
        if value is None or value.ndim == 0:
            continue
        if node.op == "Add" and value.ndim > 1:  # (1, C, 1, 1) or (C, 1, 1): the axis that is not 1
            longer = [a for a in range(value.ndim) if value.shape[a] > 1]
            axis = longer[0] if len(longer) == 1 else -1
        out.append((names[i], axis % value.ndim))
    return out


def weights_digest(proto: onnx.ModelProto) -> str:
    """SHA-256 over every initializer's name, type, shape and bytes, in name order: the same for a model however
    onnxfault reshapes its graph on loading, different once any weight differs."""
    import hashlib

    from onnx import numpy_helper

    digest = hashlib.sha256()
    for init in sorted(proto.graph.initializer, key=lambda i: i.name):
        value = numpy_helper.to_array(init)
        digest.update(f"{init.name}\0{value.dtype.str}\0{value.shape}\0".encode())
        digest.update(np.ascontiguousarray(value).tobytes())
    return digest.hexdigest()
