"""Reading a feed-forward (Leaky)ReLU classifier off an ONNX graph, for ``--method patch`` (AIGENT).

The model must end in a chain of fully connected layers — Gemm, or MatMul with an optional constant bias
Add — separated by Relu/LeakyRelu, optionally followed by Softmax/LogSoftmax. What comes before the first
fully connected layer (the *prefix*: convolutions, pooling, flattening) must be piecewise linear, so that
within a seed's linear region it is one linear map (its Jacobian). Anything else fails with the node that
breaks the assumption (a skip connection or branch counts as not feed-forward).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

from ..errors import OnnxFaultError
from ..layers import ACTIVATIONS

PASS_THROUGH = frozenset({"Identity", "Dropout"})
SCORES = frozenset({"Softmax", "LogSoftmax"})
# ops that keep a network piecewise linear in its input (Mul/Div/Sub/Add only with a constant operand)
PIECEWISE_LINEAR = frozenset({
    "Conv", "ConvTranspose", "Relu", "LeakyRelu", "MaxPool", "AveragePool", "GlobalAveragePool",
    "GlobalMaxPool", "Flatten", "Reshape", "Transpose", "BatchNormalization", "Identity", "Dropout", "Pad",
    "Squeeze", "Unsqueeze", "Concat", "Slice", "Gemm", "MatMul", "Add", "Sub", "Mul", "Div",
    "Constant", "Shape", "Gather", "Cast",
})


@dataclass
class DenseChain:
    """The fully connected tail: z_l = W_l h_(l−1) + b_l, h_l = act_l(z_l); the last z is the logits."""

    prefix: str  # the tensor feeding the first fully connected layer
    weights: list[np.ndarray]  # (out, in) float64
    biases: list[np.ndarray]
    slopes: list[float]  # per hidden layer: 0 for Relu, alpha for LeakyRelu
    nodes: list[str]  # the first node of each layer, for messages

    def forward(self, h: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Pre-activations z_l and inputs h_(l−1) of every layer, for one flattened prefix value ``h``."""
        zs, hs = [], []
        for l, (w, b) in enumerate(zip(self.weights, self.biases)):
            hs.append(h)
            z = w @ h + b
            zs.append(z)
            if l < len(self.slopes):
                h = np.where(z > 0, z, self.slopes[l] * z)
        return zs, hs


def _name(node: onnx.NodeProto) -> str:
    return node.name or node.output[0]


class _Graph:
    def __init__(self, model: onnx.ModelProto):
        self.producer = {o: n for n in model.graph.node for o in n.output}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for n in model.graph.node:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)
        self.constants = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
        for n in model.graph.node:
            if n.op_type == "Constant":
                value = next((a.t for a in n.attribute if a.name == "value"), None)
                if value is not None:
                    self.constants[n.output[0]] = numpy_helper.to_array(value)

    def source(self, tensor: str) -> onnx.NodeProto | None:
        """The producer of ``tensor``, looking through Identity/Dropout."""
        node = self.producer.get(tensor)
        while node is not None and node.op_type in PASS_THROUGH:
            node = self.producer.get(node.input[0])
        return node

    def const(self, name: str) -> np.ndarray | None:
        return self.constants.get(name)


def _attr(node: onnx.NodeProto, name: str, default):
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _dense(g: _Graph, node: onnx.NodeProto) -> tuple[str, np.ndarray, np.ndarray] | None:
    """(input tensor, W (out, in), b) when ``node`` ends a fully connected layer, else None."""
    if node.op_type == "Gemm":
        b_mat = g.const(node.input[1])
        if b_mat is None or _attr(node, "transA", 0):
            return None
        alpha, beta = _attr(node, "alpha", 1.0), _attr(node, "beta", 1.0)
        w = alpha * (b_mat if _attr(node, "transB", 0) else b_mat.T)
        bias = g.const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        b = beta * np.broadcast_to(bias, (w.shape[0],)) if bias is not None else np.zeros(w.shape[0])
        return node.input[0], w.astype(np.float64), np.asarray(b, np.float64)
    if node.op_type == "MatMul":
        w = g.const(node.input[1])
        return (node.input[0], w.T.astype(np.float64), np.zeros(w.shape[1])) if w is not None and w.ndim == 2 else None
    if node.op_type == "Add":
        consts = [g.const(i) for i in node.input]
        if sum(c is not None for c in consts) != 1:
            return None
        bias, other = (consts[0], node.input[1]) if consts[0] is not None else (consts[1], node.input[0])
        inner = g.source(other)
        found = _dense(g, inner) if inner is not None and inner.op_type == "MatMul" else None
        if found is None:
            return None
        return found[0], found[1], found[2] + np.broadcast_to(bias, found[2].shape).astype(np.float64)
    return None


def dense_chain(model: onnx.ModelProto, scores: str) -> DenseChain:
    """The fully connected (Leaky)ReLU chain that ends at the class ``scores``; fails naming the node
    that is not feed-forward, not ReLU-like or not piecewise linear."""
    g = _Graph(model)
    node = g.source(scores)
    if node is not None and node.op_type in SCORES:
        node = g.source(node.input[0])
    weights, biases, slopes, names = [], [], [], []
    while True:
        found = _dense(g, node) if node is not None else None
        if found is None:
            what = "the model input" if node is None else f"node '{_name(node)}' ({node.op_type})"
            raise OnnxFaultError(f"--method patch needs fully connected layers (Gemm, or MatMul + Add) between "
                                 f"ReLUs up to the class scores; {what} breaks that")
        inp, w, b = found
        weights.insert(0, w)
        biases.insert(0, b)
        names.insert(0, _name(node))
        before = g.source(inp)
        upstream = g.source(before.input[0]) if before is not None and before.input else None
        if upstream is None or _dense(g, upstream) is None or before.op_type not in ACTIVATIONS:
            prefix = inp  # the first fully connected layer: what feeds it is the prefix
            break
        if before.op_type not in ("Relu", "LeakyRelu"):
            raise OnnxFaultError(f"--method patch needs ReLU or LeakyReLU activations between the fully connected "
                                 f"layers; node '{_name(before)}' is {before.op_type}")
        if len(g.consumers.get(before.output[0], [])) > 1 or len(g.consumers.get(before.input[0], [])) > 1:
            raise OnnxFaultError(f"--method patch needs a feed-forward chain; a tensor around node '{_name(before)}' "
                                 "feeds several nodes")
        slopes.insert(0, 0.0 if before.op_type == "Relu" else float(_attr(before, "alpha", 0.01)))
        node = upstream
    _check_prefix(g, prefix)
    return DenseChain(prefix, weights, biases, slopes, names)


def _check_prefix(g: _Graph, tensor: str) -> None:
    """Every node computing ``tensor`` must be piecewise linear (arithmetic only with a constant)."""
    stack, seen = [tensor], set()
    while stack:
        node = g.producer.get(stack.pop())
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        computed = [i for i in node.input if i and g.const(i) is None and i in g.producer]
        if node.op_type in ("Add", "Sub", "Concat") and len(computed) > 1:
            raise OnnxFaultError(f"--method patch needs a feed-forward network; node '{_name(node)}' ({node.op_type}) "
                                 "joins two computed tensors (a skip connection or branch)")
        if node.op_type not in PIECEWISE_LINEAR or (node.op_type in ("Mul", "Div") and len(computed) > 1):
            raise OnnxFaultError(f"--method patch translates the patch back to the input only through piecewise "
                                 f"linear layers; node '{_name(node)}' ({node.op_type}) is not")
        stack.extend(i for i in node.input if i)
