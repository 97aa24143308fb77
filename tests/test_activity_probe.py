"""The in-graph activity probe against the reference loop on a net that mixes every probe kind:
a ReLU conv (float32 max), a bare conv (float64 mean), a Tanh dense layer (elements) — in three opsets."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

from onnxfault import DataOptions, load_model, localize
from onnxfault.files import write_npz

from conftest import init, make_model, save
from deepfault_reference import deepfault_loop, forward

rng = np.random.default_rng(3)


@pytest.fixture(params=[13, 17, 18])  # Reduce* axes: attribute before 18, input from 18
def mixed_net(tmp_path, request):
    nodes = [helper.make_node("Conv", ["input", "W1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "W2"], ["c2"]),
             helper.make_node("Flatten", ["c2"], ["f"]),
             helper.make_node("Gemm", ["f", "W3"], ["g"]), helper.make_node("Tanh", ["g"], ["t"]),
             helper.make_node("Gemm", ["t", "W4"], ["logits"])]
    model = make_model(nodes, [("input", TensorProto.FLOAT, ["N", 2, 6, 6])], [("logits", TensorProto.FLOAT, ["N", 4])],
                       [init("W1", rng.standard_normal((3, 2, 3, 3))), init("W2", rng.standard_normal((5, 3, 3, 3))),
                        init("W3", rng.standard_normal((80, 7))), init("W4", rng.standard_normal((7, 4)))],
                       opset=request.param)
    x = rng.standard_normal((300, 2, 6, 6)).astype(np.float32)
    y = rng.integers(0, 4, 300)
    return save(model, tmp_path / "mixed.onnx"), write_npz(tmp_path / "mixed.npz", {"x": x, "y": y}), x, y


@pytest.mark.parametrize("granularity, threshold", [("channel", 0.0), ("channel", 0.05), ("element", 0.0)])
def test_probe_matches_reference(mixed_net, granularity, threshold):
    path, data, x, y = mixed_net
    model = load_model(path)
    assert [(l.tensor, l.op) for l in model.layers] == [("r1", "Relu"), ("c2", "Conv"), ("t", "Tanh")]
    logits, *activations = forward(path, x, ["r1", "c2", "t"], batch=64)
    want = deepfault_loop(activations, logits.argmax(1), y, lambda p, t: p != t, granularity, threshold)
    got = localize(model, data, granularity=granularity, threshold=threshold,
                   data_options=DataOptions(batch_size=64)).spectrum.counts
    assert np.array_equal(got, want)
