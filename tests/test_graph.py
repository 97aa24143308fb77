"""Graph surgery (expose, cut, dynamic batch) and the candidate-layer rule, on hand-built graphs."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from onnxfault import cut_at, expose_outputs, load_model
from onnxfault.errors import OnnxFaultError

from conftest import init, make_model, save

F = TensorProto.FLOAT
rng = np.random.default_rng(0)


def w(*shape):
    return rng.standard_normal(shape).astype(np.float32)


def run(model, x):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})


def layers_of(model, tmp_path):
    return [(l.tensor, l.op) for l in load_model(save(model, tmp_path / "m.onnx")).layers]


def test_matmul_bias_activation_and_output_layer(tmp_path):
    nodes = [helper.make_node("MatMul", ["x", "W1"], ["mm1"]), helper.make_node("Add", ["mm1", "b1"], ["z1"]),
             helper.make_node("LeakyRelu", ["z1"], ["a1"], alpha=0.01),
             helper.make_node("MatMul", ["a1", "W2"], ["mm2"]), helper.make_node("Add", ["mm2", "b2"], ["z2"]),
             helper.make_node("Tanh", ["z2"], ["a2"]),
             helper.make_node("MatMul", ["a2", "W3"], ["mm3"]), helper.make_node("Add", ["mm3", "b3"], ["z3"]),
             helper.make_node("Softmax", ["z3"], ["probs"], axis=-1)]
    model = make_model(nodes, [("x", F, ["N", 4])], [("probs", F, ["N", 3])],
                       [init("W1", w(4, 5)), init("b1", w(5)), init("W2", w(5, 6)), init("b2", w(6)),
                        init("W3", w(6, 3)), init("b3", w(3))])
    assert layers_of(model, tmp_path) == [("a1", "LeakyRelu"), ("a2", "Tanh")]


def test_conv_bn_relu_counts_once_and_bare_linear_counts(tmp_path):
    nodes = [helper.make_node("Conv", ["x", "Wc"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c", "g", "b", "m", "v"], ["bn"]),
             helper.make_node("Relu", ["bn"], ["r"]),
             helper.make_node("Conv", ["r", "Wc2"], ["c2"]),  # no activation: a candidate itself
             helper.make_node("GlobalAveragePool", ["c2"], ["gap"]),
             helper.make_node("Flatten", ["gap"], ["f"]),
             helper.make_node("Gemm", ["f", "Wf"], ["logits"])]
    model = make_model(nodes, [("x", F, ["N", 1, 6, 6])], [("logits", F, ["N", 2])],
                       [init("Wc", w(3, 1, 3, 3)), init("g", np.ones(3)), init("b", np.zeros(3)),
                        init("m", np.zeros(3)), init("v", np.ones(3)), init("Wc2", w(4, 3, 3, 3)),
                        init("Wf", w(4, 2))])
    assert layers_of(model, tmp_path) == [("r", "Relu"), ("c2", "Conv")]
    assert [(l.shape, l.neurons("channel"), l.neurons("element")) for l in load_model(tmp_path / "m.onnx").layers] \
        == [((3, 6, 6), 3, 108), ((4, 4, 4), 4, 64)]


def test_relu6_clip_swish_and_plain_clip(tmp_path):
    nodes = [helper.make_node("Gemm", ["x", "W1"], ["g1"]),
             helper.make_node("Clip", ["g1", "zero", "six"], ["relu6"]),
             helper.make_node("Gemm", ["relu6", "W2"], ["g2"]),
             helper.make_node("Sigmoid", ["g2"], ["sig"]), helper.make_node("Mul", ["g2", "sig"], ["swish"]),
             helper.make_node("Gemm", ["swish", "W3"], ["g3"]),
             helper.make_node("Clip", ["g3", "minus1", "six"], ["clipped"]),  # not a ReLU: g3 counts instead
             helper.make_node("Gemm", ["clipped", "W4"], ["logits"])]
    model = make_model(nodes, [("x", F, ["N", 4])], [("logits", F, ["N", 3])],
                       [init("W1", w(4, 5)), init("W2", w(5, 5)), init("W3", w(5, 5)), init("W4", w(5, 3)),
                        init("zero", 0.0), init("six", 6.0), init("minus1", -1.0)])
    assert layers_of(model, tmp_path) == [("relu6", "Clip"), ("swish", "Swish"), ("g3", "Gemm")]


def test_expose_and_cut_return_new_models_with_the_same_values(tiny_mlp):
    original = onnx.load(str(tiny_mlp))
    before = original.SerializeToString()
    exposed = expose_outputs(original, ["pre", "h"])
    sub = cut_at(original, ["h"])
    assert original.SerializeToString() == before  # the caller's model is untouched
    assert [o.name for o in exposed.graph.output] == ["logits", "pre", "h"]
    assert [o.name for o in sub.graph.output] == ["h"] and len(sub.graph.node) == 2
    x = w(7, 2)
    logits, pre, h = run(exposed, x)
    assert np.array_equal(run(sub, x)[0], h)
    assert np.array_equal(h, np.maximum(pre, 0)) and np.allclose(logits, run(original, x)[0])


def test_unknown_tensor_names_list_close_matches(tiny_mlp):
    with pytest.raises(OnnxFaultError, match=r"unknown tensor 'pree'; did you mean pre"):
        expose_outputs(onnx.load(str(tiny_mlp)), ["pree"])
    with pytest.raises(OnnxFaultError, match="unknown tensor"):
        load_model(tiny_mlp).select_layers("h,nope")


def test_fixed_batch_is_made_dynamic_and_verified(tmp_path):
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["r"]), helper.make_node("Flatten", ["r"], ["f"]),
             helper.make_node("Gemm", ["f", "W1"], ["g"]), helper.make_node("Relu", ["g"], ["h"]),
             helper.make_node("Gemm", ["h", "W2"], ["logits"])]
    W1, W2 = w(4, 3), w(3, 2)
    model = make_model(nodes, [("x", F, [1, 4])], [("logits", F, [1, 2])],
                       [onnx.numpy_helper.from_array(np.array([1, 2, 2], np.int64), "shape"),
                        init("W1", W1), init("W2", W2)])
    loaded = load_model(save(model, tmp_path / "fixed.onnx"))
    assert loaded.fixed_batch is None and "made dynamic" in loaded.notes[0]
    x = w(5, 4)
    assert np.allclose(loaded.session("cpu").run(x)[0], np.maximum(x @ W1, 0) @ W2, atol=1e-5)


def test_unfixable_batch_falls_back_to_per_sample_runs(tmp_path):
    nodes = [helper.make_node("Concat", ["x", "pad"], ["cat"], axis=1),  # the (1, 3) constant bakes batch 1 in
             helper.make_node("Gemm", ["cat", "W1"], ["g"]), helper.make_node("Relu", ["g"], ["h"]),
             helper.make_node("Gemm", ["h", "W2"], ["logits"])]
    pad, W1, W2 = w(1, 3), w(7, 3), w(3, 2)
    model = make_model(nodes, [("x", F, [1, 4])], [("logits", F, [1, 2])],
                       [init("pad", pad), init("W1", W1), init("W2", W2)])
    loaded = load_model(save(model, tmp_path / "baked.onnx"))
    assert loaded.fixed_batch == 1 and "could not be made dynamic" in loaded.notes[0]
    x = w(5, 4)
    want = np.maximum(np.concatenate([x, np.repeat(pad, 5, 0)], 1) @ W1, 0) @ W2
    assert np.allclose(loaded.session("cpu").run(x)[0], want, atol=1e-5)


def test_layer_selection_all_and_named(lenet_onnx):
    model = load_model(lenet_onnx)
    auto = [l.tensor for l in model.select_layers("auto")]
    everything = model.select_layers("all")
    ops = [l.op for l in everything]
    assert set(auto) <= {l.tensor for l in everything}
    assert ops[:3] == ["Conv", "Relu", "MaxPool"] and "Gemm" in ops  # pre-activation tensors included
    assert all(l.op != "Gemm" or l.shape != (10,) for l in everything)  # never the class-score layer
    named = model.select_layers(f"{everything[0].tensor}, {auto[-1]}")
    assert [(l.tensor, l.op, l.shape, l.channel_axis) for l in named] == [
        (everything[0].tensor, "Conv", (6, 28, 28), 0), (auto[-1], "Relu", (84,), None)]
