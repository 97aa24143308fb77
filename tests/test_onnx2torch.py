"""The ONNX→torch adapter: every supported op against onnxruntime on a one-node graph (values, and
finite gradients with respect to the input), and whole networks to 1e-5."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from onnxfault.adapters.onnx2torch import CONVERTERS, to_torch
from onnxfault.errors import OnnxFaultError

rng = np.random.default_rng(0)
F32 = TensorProto.FLOAT


def r(*shape):
    return rng.standard_normal(shape).astype(np.float32)


def i64(*values):
    return np.asarray(values, np.int64)


# op: (attributes, input shape, constant extra inputs, opset)
CASES = {
    "Relu": ({}, (2, 5), [], 17), "Sigmoid": ({}, (2, 5), [], 17), "Tanh": ({}, (2, 5), [], 17),
    "Softplus": ({}, (2, 5), [], 17), "Erf": ({}, (2, 5), [], 17), "Identity": ({}, (2, 5), [], 17),
    "LeakyRelu": ({"alpha": 0.2}, (2, 5), [], 17), "Elu": ({"alpha": 0.7}, (2, 5), [], 17),
    "Selu": ({}, (2, 5), [], 17), "HardSigmoid": ({"alpha": 0.3, "beta": 0.4}, (2, 5), [], 17),
    "HardSwish": ({}, (2, 8), [], 17), "PRelu": ({}, (2, 3, 4), [r(3, 1)], 17),
    "Softmax": ({"axis": 1}, (2, 3, 4), [], 17), "LogSoftmax": ({}, (2, 5), [], 17),
    "Softmax@11": ({"axis": 1}, (2, 3, 4), [], 11),
    "Clip": ({}, (2, 5), [np.float32(-0.5), np.float32(0.7)], 17), "Clip@6": ({"min": 0.0, "max": 6.0}, (2, 5), [], 6),
    "Add": ({}, (2, 5), [r(5)], 17), "Sub": ({}, (2, 5), [r(2, 5)], 17), "Mul": ({}, (2, 5), [r(1, 5)], 17),
    "Div": ({}, (2, 5), [r(5) + 3], 17),
    "Gemm": ({"transB": 1, "alpha": 0.5, "beta": 2.0}, (3, 4), [r(6, 4), r(6)], 17), "MatMul": ({}, (2, 3, 4), [r(4, 6)], 17),
    "Conv": ({"pads": [1, 0, 2, 1], "strides": [2, 1], "dilations": [1, 2]}, (2, 3, 9, 8), [r(4, 3, 3, 2), r(4)], 17),
    "Conv@same": ({"auto_pad": "SAME_UPPER", "strides": [2, 2]}, (1, 2, 7, 6), [r(3, 2, 3, 3)], 17),
    "Conv@group": ({"group": 3, "pads": [1, 1, 1, 1]}, (2, 3, 6, 6), [r(6, 1, 3, 3), r(6)], 17),
    "ConvTranspose": ({"strides": [2, 2], "pads": [1, 1, 1, 1], "output_padding": [1, 1]}, (1, 3, 4, 5), [r(3, 2, 3, 3)], 17),
    "BatchNormalization": ({"epsilon": 1e-3}, (2, 3, 4, 4), [r(3), r(3), r(3), np.abs(r(3)) + 0.5], 17),
    "MaxPool": ({"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 0, 1, 1], "ceil_mode": 1}, (1, 2, 9, 8), [], 17),
    "AveragePool": ({"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 0, 1]}, (1, 2, 8, 8), [], 17),
    "AveragePool@incl": ({"kernel_shape": [2, 2], "pads": [1, 1, 1, 1], "count_include_pad": 1}, (1, 2, 5, 5), [], 17),
    "GlobalAveragePool": ({}, (2, 3, 4, 5), [], 17), "GlobalMaxPool": ({}, (2, 3, 4, 5), [], 17),
    "Flatten": ({"axis": 2}, (2, 3, 4, 5), [], 17), "Reshape": ({}, (2, 3, 4), [i64(0, -1, 2)], 17),
    "Transpose": ({"perm": [0, 2, 3, 1]}, (2, 3, 4, 5), [], 17), "Concat": ({"axis": 1}, (2, 3), [r(2, 4)], 17),
    "Dropout": ({}, (2, 5), [], 17), "Gather": ({"axis": 1}, (2, 5, 3), [i64(4, 0, -1)], 17),
    "Unsqueeze": ({}, (2, 5), [i64(0, 3)], 17), "Unsqueeze@11": ({"axes": [1]}, (2, 5), [], 11),
    "Squeeze": ({}, (2, 1, 5, 1), [i64(1)], 17), "Squeeze@11": ({"axes": [3]}, (2, 1, 5, 1), [], 11),
    "Slice": ({}, (4, 6, 5), [i64(1, -4), i64(3, 100), i64(0, 1), i64(1, 2)], 17),
    "Pad": ({}, (1, 2, 3, 4), [i64(0, 0, 1, 2, 0, 0, 2, 0), np.float32(0.5)], 17),
    "Pad@reflect": ({"mode": "reflect"}, (1, 2, 4, 5), [i64(0, 0, 1, 2, 0, 0, 2, 1)], 17),
    "ReduceMean": ({"keepdims": 0}, (2, 3, 4), [i64(1, 2)], 18), "ReduceMean@13": ({"axes": [-1]}, (2, 3, 4), [], 13),
    "ReduceMax": ({"keepdims": 1}, (2, 3, 4), [i64(2)], 18), "ReduceSum": ({}, (2, 3, 4), [i64(0)], 13),
}


def one_node(case):
    attrs, shape, extras, opset = CASES[case]
    op = case.split("@")[0]
    names = ["x"] + [f"c{i}" for i in range(len(extras))]
    inits = [numpy_helper.from_array(np.asarray(v), n) for n, v in zip(names[1:], extras)]
    graph = helper.make_graph([helper.make_node(op, names, ["y"], **attrs)], "t",
                              [helper.make_tensor_value_info("x", F32, shape)], [helper.make_tensor_value_info("y", F32, None)],
                              inits)
    return model_of(graph, opset), r(*shape)


def model_of(graph, opset=17):
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


@pytest.mark.parametrize("case", sorted(CASES))
def test_op_matches_onnxruntime(case):
    model, x = one_node(case)
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    module = to_torch(model)
    xt = torch.from_numpy(x).requires_grad_(True)
    got = module(xt)[0]
    assert tuple(got.shape) == want.shape
    assert np.allclose(got.detach().numpy(), want, atol=1e-5, rtol=1e-5)
    got.sum().backward()
    assert xt.grad is not None and torch.isfinite(xt.grad).all()
    assert not any(b.requires_grad for b in module.buffers())


def test_every_op_of_the_issue_is_registered():
    required = """Gemm MatMul Add Sub Mul Div Conv ConvTranspose BatchNormalization Relu LeakyRelu PRelu Elu Sigmoid Tanh
    HardSigmoid HardSwish Softplus Softmax LogSoftmax MaxPool AveragePool GlobalAveragePool Flatten Reshape Transpose
    Concat Clip Dropout Identity Constant Shape Gather Unsqueeze Squeeze Slice Pad ReduceMean Erf""".split()
    assert set(required) <= set(CONVERTERS)


def test_shape_arithmetic_subgraph():
    # Shape → Gather → Unsqueeze → Concat → Reshape, as exporters write a dynamic flatten
    nodes = [helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
             helper.make_node("Unsqueeze", ["n", "ax"], ["n1"]), helper.make_node("Concat", ["n1", "minus1"], ["shape"], axis=0),
             helper.make_node("Reshape", ["x", "shape"], ["y"]), helper.make_node("Constant", [], ["k"], value=numpy_helper.from_array(np.float32(2.0))),
             helper.make_node("Mul", ["y", "k"], ["z"])]
    graph = helper.make_graph(nodes, "t", [helper.make_tensor_value_info("x", F32, ["N", 3, 4])],
                              [helper.make_tensor_value_info("z", F32, None)],
                              [numpy_helper.from_array(i64(0)[0], "zero"), numpy_helper.from_array(i64(0), "ax"),
                               numpy_helper.from_array(i64(-1), "minus1")])
    model = model_of(graph)
    x = r(5, 3, 4)
    assert np.allclose(to_torch(model)(torch.from_numpy(x))[0].numpy(), x.reshape(5, -1) * 2)


def test_unsupported_op_names_op_node_and_nearest():
    graph = helper.make_graph([helper.make_node("DynamicQuantizeLinear", ["x"], ["y", "s", "z"], name="quant")], "t",
                              [helper.make_tensor_value_info("x", F32, [2, 3])], [helper.make_tensor_value_info("y", TensorProto.UINT8, None)])
    with pytest.raises(OnnxFaultError) as err:
        to_torch(model_of(graph))
    assert str(err.value).startswith("the ONNX→torch adapter does not support op DynamicQuantizeLinear (node 'quant'); "
                                     "nearest supported: ")
    assert "inspect --ops" in str(err.value) and len(str(err.value)) < 250
    graph = helper.make_graph([helper.make_node("FusedConv", ["x"], ["y"], name="fused", domain="com.microsoft")], "t",
                              [helper.make_tensor_value_info("x", F32, [2, 3])], [helper.make_tensor_value_info("y", F32, None)])
    with pytest.raises(OnnxFaultError, match="does not support op FusedConv of domain 'com.microsoft' \\(node 'fused'\\)"):
        to_torch(model_of(graph))


def whole_networks():
    import sys

    from conftest import EXAMPLES

    sys.path.insert(0, str(EXAMPLES))
    import architectures

    return {"mobilenet_v3_small_like": architectures.mobilenet_v3_small_like,
            "squeezenet_like": architectures.squeezenet_like}


@pytest.mark.parametrize("net", ["mnist_dense", "mnist_lenet", "mobilenet_v3_small_like", "squeezenet_like"])
def test_whole_networks_match_onnxruntime(tmp_path, net):
    from conftest import EXAMPLES
    from onnxfault import load_model

    if net.startswith("mnist"):
        path, shape = EXAMPLES / f"{net}.onnx", (1, 28, 28)
    else:
        torch.manual_seed(0)
        module = whole_networks()[net]().eval()
        from onnxfault.adapters import from_torch

        path, shape = from_torch(module, torch.rand(1, 3, 32, 32), tmp_path / f"{net}.onnx").path, (3, 32, 32)
    model = load_model(path)
    x = rng.random((4, *shape), dtype=np.float32)
    want = model.session("cpu").run(x)[0]
    got = to_torch(model.proto)(torch.from_numpy(x))[0].numpy()
    assert np.abs(got - want).max() < 1e-5


def two_input_graph():
    """y = relu(x @ w + mask): a graph whose second input is, say, a fixed mask."""
    nodes = [helper.make_node("MatMul", ["x", "w"], ["xw"]), helper.make_node("Add", ["xw", "mask"], ["s"]),
             helper.make_node("Relu", ["s"], ["y"])]
    graph = helper.make_graph(nodes, "t", [helper.make_tensor_value_info("x", F32, ["N", 3]),
                                           helper.make_tensor_value_info("mask", F32, [4])],
                              [helper.make_tensor_value_info("y", F32, None)], [numpy_helper.from_array(r(3, 4), "w")])
    return model_of(graph)


def test_a_second_input_given_a_value_becomes_a_buffer():
    model, mask = two_input_graph(), r(4)
    module = to_torch(model, constants={"mask": mask})
    x = r(5, 3)
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"x": x, "mask": mask})[0]
    xt = torch.from_numpy(x).requires_grad_(True)
    got = module(xt)[0]
    assert np.allclose(got.detach().numpy(), want, atol=1e-6)
    got.sum().backward()
    assert xt.grad is not None and not any(b.requires_grad for b in module.buffers())


def test_a_second_input_is_fed_per_call_and_gets_no_gradient_of_its_own():
    """A graph with two real inputs (a text model's embeddings and attention mask): ``module(x, mask)``
    computes what onnxruntime does; the gradient flows to ``x``; leaving ``mask`` out is one error naming both."""
    model, mask = two_input_graph(), r(4)
    module = to_torch(model)
    assert (module.input_name, module.side_names) == ("x", ["mask"])
    x = r(5, 3)
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"x": x, "mask": mask})[0]
    xt = torch.from_numpy(x).requires_grad_(True)
    got = module(xt, torch.from_numpy(mask))[0]
    assert np.allclose(got.detach().numpy(), want, atol=1e-6)
    got.sum().backward()
    assert xt.grad is not None
    with pytest.raises(OnnxFaultError, match=r"the graph has inputs x, mask; got 1 values"):
        module(xt)


def test_nodes_with_several_outputs():
    """Split's parts (the third unnamed: it still takes its share) and TopK's values and indices feed later
    nodes. (onnxruntime 1.32 crashes on this graph, so numpy gives the expected values.)"""
    nodes = [helper.make_node("Split", ["x"], ["a", "b", ""], axis=1, num_outputs=3),
             helper.make_node("TopK", ["a", "k"], ["values", "indices"], axis=1),
             helper.make_node("Cast", ["indices"], ["fi"], to=TensorProto.FLOAT),
             helper.make_node("Add", ["values", "fi"], ["y0"]), helper.make_node("Mul", ["y0", "b"], ["y"])]
    graph = helper.make_graph(nodes, "t", [helper.make_tensor_value_info("x", F32, ["N", 6])],
                              [helper.make_tensor_value_info("y", F32, None)], [numpy_helper.from_array(i64(2), "k")])
    model = model_of(graph, 18)
    x = r(4, 6)
    a, b = x[:, 0:2], x[:, 2:4]
    indices = np.argsort(-a, axis=1, kind="stable")
    want = (np.take_along_axis(a, indices, 1) + indices) * b
    assert np.allclose(to_torch(model)(torch.from_numpy(x))[0].numpy(), want, atol=1e-6)
