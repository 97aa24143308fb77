"""Reading a feed-forward (Leaky)ReLU classifier off an ONNX graph (its :class:`GraphView`), for the patch method
(AIGENT).

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

from ..errors import OnnxFaultError
from ..graph_view import GraphView, Node, graph_view
from ..layers import ACTIVATIONS
from ..ops import having

PASS_THROUGH = having("pass_through")
SCORES = having("scores")
# ops that keep a network piecewise linear in its input (Mul/Div/Sub/Add only with a constant operand)
PIECEWISE_LINEAR = having("piecewise_linear")


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


def _name(node: Node) -> str:
    return node.name or node.outputs[0].name


def _source(g: GraphView, tensor: str) -> Node | None:
    """The producer of ``tensor``, looking through Identity/Dropout."""
    node = g.producer(tensor)
    while node is not None and node.op in PASS_THROUGH:
        node = g.producer(node.inputs[0].name)
    return node


def _dense(g: GraphView, node: Node) -> tuple[str, np.ndarray, np.ndarray] | None:
    """(input tensor, W (out, in), b) when ``node`` ends a fully connected layer, else None."""
    inputs = [t.name for t in node.inputs]
    if node.op == "Gemm":
        b_mat = g.constant(inputs[1])
        if b_mat is None or node.attrs.get("transA", 0):
            return None
        alpha, beta = node.attrs.get("alpha", 1.0), node.attrs.get("beta", 1.0)
        w = alpha * (b_mat if node.attrs.get("transB", 0) else b_mat.T)
        bias = g.constant(inputs[2]) if len(inputs) > 2 and inputs[2] else None
        b = beta * np.broadcast_to(bias, (w.shape[0],)) if bias is not None else np.zeros(w.shape[0])
        return inputs[0], w.astype(np.float64), np.asarray(b, np.float64)
    if node.op == "MatMul":
        w = g.constant(inputs[1])
        return (inputs[0], w.T.astype(np.float64), np.zeros(w.shape[1])) if w is not None and w.ndim == 2 else None
    if node.op == "Add":
        consts = [g.constant(i) for i in inputs]
        if sum(c is not None for c in consts) != 1:
            return None
        bias, other = (consts[0], inputs[1]) if consts[0] is not None else (consts[1], inputs[0])
        inner = _source(g, other)
        found = _dense(g, inner) if inner is not None and inner.op == "MatMul" else None
        if found is None:
            return None
        return found[0], found[1], found[2] + np.broadcast_to(bias, found[2].shape).astype(np.float64)
    return None


def dense_chain(model: onnx.ModelProto, scores: str) -> DenseChain:
    """The fully connected (Leaky)ReLU chain that ends at the class ``scores``; fails naming the node
    that is not feed-forward, not ReLU-like or not piecewise linear."""
    g = graph_view(model)
    node = _source(g, scores)
    if node is not None and node.op in SCORES:
        node = _source(g, node.inputs[0].name)
    weights, biases, slopes, names = [], [], [], []
    while True:
        found = _dense(g, node) if node is not None else None
        if found is None:
            what = "the model input" if node is None else f"node '{_name(node)}' ({node.op})"
            raise OnnxFaultError(f"patch needs fully connected layers (Gemm, or MatMul + Add) between "
                                 f"ReLUs up to the class scores; {what} breaks that")
        inp, w, b = found
        weights.insert(0, w)
        biases.insert(0, b)
        names.insert(0, _name(node))
        before = _source(g, inp)
        upstream = _source(g, before.inputs[0].name) if before is not None and before.inputs else None
        if upstream is None or _dense(g, upstream) is None or before.op not in ACTIVATIONS:
            prefix = inp  # the first fully connected layer: what feeds it is the prefix
            break
        if before.op not in ("Relu", "LeakyRelu"):
            raise OnnxFaultError(f"patch needs ReLU or LeakyReLU activations between the fully connected "
                                 f"layers; node '{_name(before)}' is {before.op}")
        if len(g.consumers(before.outputs[0].name)) > 1 or len(g.consumers(before.inputs[0].name)) > 1:
            raise OnnxFaultError(f"patch needs a feed-forward chain; a tensor around node '{_name(before)}' "
                                 "feeds several nodes")
        slopes.insert(0, 0.0 if before.op == "Relu" else float(before.attrs.get("alpha", 0.01)))
        node = upstream
    _check_prefix(g, prefix)
    return DenseChain(prefix, weights, biases, slopes, names)


def _check_prefix(g: GraphView, tensor: str) -> None:
    """Every node computing ``tensor`` must be piecewise linear (arithmetic only with a constant)."""
    stack, seen = [tensor], set()
    while stack:
        node = g.producer(stack.pop())
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        names = [t.name for t in node.inputs if t.name]
        computed = [i for i in names if g.constant(i) is None and g.producer(i) is not None]
        if node.op in ("Add", "Sub", "Concat") and len(computed) > 1:
            raise OnnxFaultError(f"patch needs a feed-forward network; node '{_name(node)}' ({node.op}) "
                                 "joins two computed tensors (a skip connection or branch)")
        if node.op not in PIECEWISE_LINEAR or (node.op in ("Mul", "Div") and len(computed) > 1):
            raise OnnxFaultError(f"patch translates the patch back to the input only through piecewise "
                                 f"linear layers; node '{_name(node)}' ({node.op}) is not")
        stack.extend(names)
