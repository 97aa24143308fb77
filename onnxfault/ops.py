"""The one table of what onnxfault knows about ONNX ops: each op's traits, from which every module takes the op
sets it needs (``having("activation")``). A new op, or a new trait of one, is one line here.

Traits:

* ``activation``: an elementwise activation function (a layer's output is read at it).
* ``monotonic``: an elementwise increasing activation, ascended through its input (its pre-activation).
* ``nonnegative``: its outputs are ≥ 0, so "active" (> 0) needs no other threshold.
* ``elementwise``: elementwise arithmetic that may make up an activation written out in primitives (besides the
  activations themselves).
* ``linear``: a trainable linear layer (its output is a candidate neuron layer).
* ``normalization``: a normalization layer.
* ``layout``: moves or reshapes values without computing new ones, inside a written-out activation.
* ``reshaping``: a reshape or axis permutation looked back through to find what computed a tensor.
* ``index_passing``: passes token ids through unchanged in value (Cast, reshapes), on the way to an embedding.
* ``channels_first``: works on (N, C, …) tensors, its channel axis 1.
* ``features_last``: its output's features are on the last axis.
* ``unit_pass_through``: keeps each unit (channel) apart, so a channel axis is read through it.
* ``pass_through``: the identity at inference (Identity, Dropout).
* ``scores``: turns logits into class scores (Softmax, LogSoftmax).
* ``piecewise_linear``: keeps a network piecewise linear in its input (Mul/Div/Sub/Add with a constant operand).
"""
from __future__ import annotations

__all__ = ["OPS", "TRAITS", "having", "traits_of"]

OPS: dict[str, frozenset[str]] = {op: frozenset(traits.split()) for op, traits in {
    "Abs": "elementwise",
    "Add": "elementwise piecewise_linear",
    "AveragePool": "channels_first piecewise_linear",
    "BatchNormalization": "channels_first unit_pass_through piecewise_linear",
    "Cast": "elementwise layout index_passing piecewise_linear",
    "Celu": "activation monotonic",
    "Clip": "activation monotonic",
    "Concat": "piecewise_linear",
    "Constant": "piecewise_linear",
    "Conv": "linear channels_first piecewise_linear",
    "ConvTranspose": "linear channels_first piecewise_linear",
    "Div": "elementwise piecewise_linear",
    "Dropout": "unit_pass_through pass_through piecewise_linear",
    "Elu": "activation monotonic",
    "Erf": "elementwise",
    "Exp": "elementwise",
    "Expand": "layout",
    "Flatten": "layout reshaping index_passing piecewise_linear",
    "Gather": "piecewise_linear",
    "Gelu": "activation",
    "Gemm": "linear features_last piecewise_linear",
    "GlobalAveragePool": "channels_first piecewise_linear",
    "GlobalMaxPool": "channels_first piecewise_linear",
    "GroupNormalization": "normalization channels_first",
    "HardSigmoid": "activation monotonic nonnegative",
    "HardSwish": "activation",
    "Identity": "elementwise layout unit_pass_through reshaping index_passing pass_through piecewise_linear",
    "InstanceNormalization": "normalization channels_first",
    "LRN": "channels_first",
    "LayerNormalization": "normalization features_last",
    "LeakyRelu": "activation monotonic piecewise_linear",
    "Log": "elementwise",
    "LogSoftmax": "scores",
    "LpPool": "channels_first",
    "MatMul": "linear features_last piecewise_linear",
    "Max": "elementwise",
    "MaxPool": "channels_first piecewise_linear",
    "Min": "elementwise",
    "Mish": "activation",
    "Mul": "elementwise piecewise_linear",
    "Neg": "elementwise",
    "PRelu": "activation monotonic",
    "Pad": "piecewise_linear",
    "Pow": "elementwise",
    "RMSNormalization": "normalization features_last",
    "Reciprocal": "elementwise",
    "Relu": "activation monotonic nonnegative piecewise_linear",
    "Reshape": "layout reshaping index_passing piecewise_linear",
    "Selu": "activation monotonic",
    "Shape": "piecewise_linear",
    "Sigmoid": "activation monotonic nonnegative",
    "Slice": "piecewise_linear",
    "Softmax": "scores",
    "Softplus": "activation monotonic nonnegative",
    "Softsign": "activation monotonic",
    "Sqrt": "elementwise",
    "Squeeze": "layout reshaping index_passing piecewise_linear",
    "Sub": "elementwise piecewise_linear",
    "Swish": "activation",
    "Tanh": "activation monotonic",
    "ThresholdedRelu": "activation monotonic",
    "Transpose": "layout unit_pass_through reshaping piecewise_linear",
    "Unsqueeze": "layout reshaping index_passing piecewise_linear",
}.items()}
TRAITS = frozenset().union(*OPS.values())


def having(*traits: str) -> frozenset[str]:
    """The ops that have every one of ``traits``."""
    unknown = set(traits) - TRAITS
    if unknown:
        raise KeyError(f"unknown op trait {sorted(unknown)[0]!r}; the traits are {sorted(TRAITS)}")
    return frozenset(op for op, found in OPS.items() if found.issuperset(traits))


def traits_of(op: str) -> frozenset[str]:
    """The traits of ``op`` (none for an op the table does not list)."""
    return OPS.get(op, frozenset())
