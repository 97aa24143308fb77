"""Which tensors hold neurons (onnxfault/layers.py) on hand-built graphs: activations written out in
elementwise ops count once, at their output; chains stay separate layers; attention products are not units;
written-out layer normalizations and batch-major tensors; the graph view they read (onnxfault/graph_view.py)
is what onnx-graphsurgeon's import and toposort give."""
from __future__ import annotations

import math

import numpy as np
import onnx_graphsurgeon as gs
import pytest
from onnx import TensorProto, helper

from onnxfault import load_model
from onnxfault import layers as lay
from onnxfault.errors import OnnxFaultError
from onnxfault.graph_view import graph_view

from conftest import init, make_model, save

rng = np.random.default_rng(0)
F32 = TensorProto.FLOAT


def const(name, value):
    return init(name, np.asarray(value, np.float32))


def mlp_with(tmp_path, activation_nodes, out="a", extra_inits=(), opset=18):
    """x (N, 4) → Gemm (+bias) → h → the given nodes (reading h, writing ``out``) → Gemm → logits (N, 3)."""
    nodes = [helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], name="fc1"), *activation_nodes,
             helper.make_node("Gemm", [out, "w2"], ["logits"], name="fc2")]
    inits = [const("w1", rng.standard_normal((4, 6))), const("b1", rng.standard_normal(6)),
             const("w2", rng.standard_normal((6, 3))), *extra_inits]
    model = make_model(nodes, [("x", F32, ["N", 4])], [("logits", F32, ["N", 3])], inits, opset=opset)
    return load_model(save(model, tmp_path / "m.onnx"))


def node(op, inputs, output, **attrs):
    return helper.make_node(op, inputs, [output], **attrs)


def layers_of(model):
    return [(layer.tensor, layer.op) for layer in model.layers]


def test_gelu_written_with_erf_is_one_activation(tmp_path):
    nodes = [node("Div", ["h", "sqrt2"], "d"), node("Erf", ["d"], "e"), node("Add", ["e", "one"], "e1"),
             node("Mul", ["h", "e1"], "m"), node("Mul", ["m", "half"], "a")]
    model = mlp_with(tmp_path, nodes, extra_inits=[const("sqrt2", math.sqrt(2)), const("one", 1.0), const("half", 0.5)])
    assert layers_of(model) == [("a", "Gelu")]  # not fc1's h, not Erf


def test_gelu_tanh_approximation_is_one_activation(tmp_path):
    nodes = [node("Pow", ["h", "three"], "cube"), node("Mul", ["cube", "c"], "c3"), node("Add", ["h", "c3"], "inner"),
             node("Mul", ["inner", "k"], "scaled"), node("Tanh", ["scaled"], "t"), node("Add", ["t", "one"], "t1"),
             node("Mul", ["h", "t1"], "m"), node("Mul", ["m", "half"], "a")]
    extra = [const("three", 3.0), const("c", 0.044715), const("k", math.sqrt(2 / math.pi)), const("one", 1.0),
             const("half", 0.5)]
    assert layers_of(mlp_with(tmp_path, nodes, extra_inits=extra)) == [("a", "Gelu")]


def test_silu_mish_and_hardswish_written_out(tmp_path):
    silu = [node("Sigmoid", ["h"], "s"), node("Mul", ["h", "s"], "a")]
    assert layers_of(mlp_with(tmp_path, silu)) == [("a", "Swish")]
    mish = [node("Softplus", ["h"], "sp"), node("Tanh", ["sp"], "t"), node("Mul", ["h", "t"], "a")]
    assert layers_of(mlp_with(tmp_path, mish)) == [("a", "Mish")]
    hardswish = [node("Add", ["h", "three"], "p"), node("Clip", ["p", "zero", "six"], "c"),
                 node("Div", ["c", "six"], "g"), node("Mul", ["h", "g"], "a")]
    extra = [const("three", 3.0), const("zero", 0.0), const("six", 6.0)]
    assert layers_of(mlp_with(tmp_path, hardswish, extra_inits=extra)) == [("a", "HardSwish")]


def test_a_chain_keeps_its_layers(tmp_path):
    # Relu, then a scale and shift (a BatchNorm folded after the activation), then Tanh: two layers
    nodes = [node("Relu", ["h"], "r"), node("Mul", ["r", "gamma"], "g"), node("Add", ["g", "beta"], "bn"),
             node("Tanh", ["bn"], "a")]
    model = mlp_with(tmp_path, nodes, extra_inits=[const("gamma", np.ones(6)), const("beta", np.zeros(6))])
    assert layers_of(model) == [("r", "Relu"), ("a", "Tanh")]


def test_written_out_layer_norm_is_a_layer(tmp_path):
    nodes = [node("ReduceMean", ["h", "axes"], "mu"), node("Sub", ["h", "mu"], "d"), node("Mul", ["d", "d"], "sq"),
             node("ReduceMean", ["sq", "axes"], "var"), node("Add", ["var", "eps"], "ve"), node("Sqrt", ["ve"], "sd"),
             node("Div", ["d", "sd"], "n"), node("Mul", ["n", "gamma"], "ng"), node("Add", ["ng", "beta"], "a")]
    extra = [helper.make_tensor("axes", TensorProto.INT64, [1], [-1]), const("eps", 1e-5),
             const("gamma", np.ones(6)), const("beta", np.zeros(6))]
    model = mlp_with(tmp_path, nodes, extra_inits=extra)
    assert layers_of(model) == [("h", "Gemm"), ("a", "LayerNormalization")]


def test_attention_products_are_not_units(tmp_path):
    """x (N, 5, 4) → q, k, v projections → softmax(q kᵀ) v → projection → mean over tokens → logits."""
    nodes = [node("MatMul", ["x", "wq"], "q"), node("MatMul", ["x", "wk"], "k"), node("MatMul", ["x", "wv"], "v"),
             node("Transpose", ["k"], "kt", perm=[0, 2, 1]), node("MatMul", ["q", "kt"], "scores"),
             node("Softmax", ["scores"], "p", axis=-1), node("MatMul", ["p", "v"], "mixed"),
             node("MatMul", ["mixed", "wo"], "proj"), node("ReduceMean", ["proj", "one"], "pooled", keepdims=0),
             node("Gemm", ["pooled", "wh"], "logits")]
    inits = [const(n, rng.standard_normal((4, 4))) for n in ("wq", "wk", "wv", "wo")] + [
        const("wh", rng.standard_normal((4, 3))), helper.make_tensor("one", TensorProto.INT64, [1], [1])]
    model = make_model(nodes, [("x", F32, ["N", 5, 4])], [("logits", F32, ["N", 3])], inits, opset=18)
    layers = load_model(save(model, tmp_path / "att.onnx")).layers
    # k's unit extends over its Transpose (as around NHWC convolutions); q kᵀ and p v are not units
    assert [(l.tensor, l.op) for l in layers] == [("q", "MatMul"), ("kt", "MatMul"), ("v", "MatMul"), ("proj", "MatMul")]
    assert [l.channel_axis for l in layers] == [1, 0, 1, 1]  # the features are the neurons (kt holds kᵀ)


def test_tensors_without_a_row_per_sample_are_not_layers(tmp_path):
    """A sequence-first tensor (tokens, N, features), as inside nn.MultiheadAttention, holds no row per sample."""
    nodes = [node("Transpose", ["x"], "tnf", perm=[1, 0, 2]), node("MatMul", ["tnf", "w"], "seq_first"),
             node("Relu", ["seq_first"], "r"), node("Transpose", ["r"], "back", perm=[1, 0, 2]),
             node("ReduceMean", ["back", "one"], "pooled", keepdims=0), node("Gemm", ["pooled", "wh"], "logits")]
    inits = [const("w", rng.standard_normal((4, 4))), const("wh", rng.standard_normal((4, 3))),
             helper.make_tensor("one", TensorProto.INT64, [1], [1])]
    model = make_model(nodes, [("x", F32, ["N", 5, 4])], [("logits", F32, ["N", 3])], inits, opset=18)
    loaded = load_model(save(model, tmp_path / "seq.onnx"))
    assert loaded.layers == [] or "r" not in [l.tensor for l in loaded.layers]
    assert "back" in [l.tensor for l in loaded.all_layers()] and "r" not in [l.tensor for l in loaded.all_layers()]
    with pytest.raises(OnnxFaultError, match="tensor 'r' does not hold one row per sample"):
        loaded.select_layers("r")


def test_layers_all_passes_over_types_numpy_lacks(tmp_path):
    """A bfloat16 tensor (a type numpy has no dtype for) is not offered by ``--layers all``; float32 ones are."""
    nodes = [node("Gemm", ["x", "w"], "h"), node("Cast", ["h"], "h16", to=TensorProto.BFLOAT16),
             node("Cast", ["h16"], "h32", to=TensorProto.FLOAT), node("Relu", ["h32"], "r"),
             node("Gemm", ["r", "wh"], "logits")]
    inits = [const("w", rng.standard_normal((4, 5))), const("wh", rng.standard_normal((5, 3)))]
    model = make_model(nodes, [("x", F32, ["N", 4])], [("logits", F32, ["N", 3])], inits)
    layers = load_model(save(model, tmp_path / "bf16.onnx")).all_layers()
    assert [l.tensor for l in layers] == ["h", "h32", "r"]


def as_graphsurgeon_reads_it(model):
    """Node order, and per tensor its producers and consumers (node positions; None outside the graph's
    nodes, e.g. in a subgraph), whether an initializer, and dtype: after gs import and toposort."""
    graph = gs.import_onnx(model).toposort()
    at = {id(n): i for i, n in enumerate(graph.nodes)}
    nodes = [(n.op, [t.name for t in n.inputs], [t.name for t in n.outputs]) for n in graph.nodes]
    return nodes, {name: ([at.get(id(p)) for p in t.inputs], [at.get(id(c)) for c in t.outputs],
                          isinstance(t, gs.Constant), t.dtype) for name, t in graph.tensors().items()}


def as_viewed(model):
    view = graph_view(model)
    at = {id(n): i for i, n in enumerate(view.nodes)}
    nodes = [(n.op, [t.name for t in n.inputs], [t.name for t in n.outputs]) for n in view.nodes]
    return nodes, {name: ([at.get(id(p)) for p in t.producers], [at.get(id(c)) for c in t.consumers],
                          t.initializer is not None, view.dtype(t)) for name, t in view.tensors.items()}


def branch(name, op, reads):
    return helper.make_graph([node(op, [reads], f"{name}_out")], name, [],
                             [helper.make_tensor_value_info(f"{name}_out", F32, None)])


def test_graph_view_is_what_graphsurgeon_reads():
    """Order by depth (b moves before c), a tensor read twice, an omitted optional input, a Constant node,
    dtypes from value_info (the first declaration wins), and the graphs read through onnx-graphsurgeon: a
    subgraph whose nodes read h (they are among h's consumers) and a model-local function."""
    nodes = [node("Relu", ["h"], "a"), node("Mul", ["a", "a"], "c"), node("Sigmoid", ["h"], "b"),
             helper.make_node("Constant", [], ["six"], value=helper.make_tensor("v", F32, [], [6.0])),
             node("Clip", ["c", "", "six"], "d"), node("Add", ["d", "b"], "a2")]
    model = mlp_model(nodes, "a2")
    model.graph.value_info.extend([helper.make_tensor_value_info("c", TensorProto.DOUBLE, None),
                                   helper.make_tensor_value_info("c", F32, None),
                                   helper.make_tensor_value_info("b", TensorProto.BFLOAT16, None)])
    view = as_viewed(model)
    assert view == as_graphsurgeon_reads_it(model)
    assert [op for op, _, _ in view[0]] == ["Gemm", "Constant", "Relu", "Sigmoid", "Mul", "Clip", "Add", "Gemm"]
    assert view[1]["a"][1] == [4, 4] and view[1]["c"][3] == np.float64
    cond = helper.make_tensor("cond", TensorProto.BOOL, [], [True])
    with_subgraph = mlp_model([helper.make_node("If", ["cond"], ["a"], then_branch=branch("then", "Relu", "h"),
                                                else_branch=branch("else", "Sigmoid", "h"))], "a", [cond])
    assert as_viewed(with_subgraph) == as_graphsurgeon_reads_it(with_subgraph)
    assert sorted(c.op for c in graph_view(with_subgraph).tensors["h"].consumers) == ["Relu", "Sigmoid"]
    swish = helper.make_function("local", "MySwish", ["X"], ["Y"], [node("Sigmoid", ["X"], "S"),
                                 node("Mul", ["X", "S"], "Y")], [helper.make_opsetid("", 18)])
    with_function = mlp_model([helper.make_node("MySwish", ["h"], ["a"], domain="local")], "a")
    with_function.functions.append(swish)
    with_function.opset_import.append(helper.make_opsetid("local", 1))
    assert as_viewed(with_function) == as_graphsurgeon_reads_it(with_function)


def mlp_model(activation_nodes, out, extra_inits=(), opset=18):
    nodes = [helper.make_node("Gemm", ["x", "w1", "b1"], ["h"]), *activation_nodes,
             helper.make_node("Gemm", [out, "w2"], ["logits"])]
    inits = [const("w1", rng.standard_normal((4, 6))), const("b1", rng.standard_normal(6)),
             const("w2", rng.standard_normal((6, 3))), *extra_inits]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", F32, ["N", 4])],
                              [helper.make_tensor_value_info("logits", F32, ["N", 3])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


@pytest.mark.parametrize("clip, extra, relu", [
    (node("Clip", ["h"], "a", min=0.0, max=6.0), [], True),  # opset < 11: an attribute
    (node("Clip", ["h"], "a", min=1.0, max=6.0), [], False),
    (node("Clip", ["h", "zero", "six"], "a"), [const("zero", 0.0), const("six", 6.0)], True),
    (node("Clip", ["h", "one", "six"], "a"), [const("one", 1.0), const("six", 6.0)], False),
    (node("Clip", ["h", "", "six"], "a"), [const("six", 6.0)], False),  # no min
    (node("Clip", ["h", "zero"], "a"), [], True),  # min from a Constant node (below)
])
def test_a_clip_is_an_activation_when_its_min_is_zero(clip, extra, relu):
    made = [helper.make_node("Constant", [], ["zero"], value=helper.make_tensor("v", F32, [], [0.0]))] \
        if clip.input[1:2] == ["zero"] and not extra else []
    model = mlp_model([*made, clip], "a", extra, opset=6 if not clip.input[1:] else 18)
    found = [(c.tensor, c.op) for c in lay.candidate_layers(lay.sorted_graph(model), "logits")]
    assert found == ([("a", "Clip")] if relu else [("h", "Gemm")])
