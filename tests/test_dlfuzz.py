"""DLFuzz: one mutation of its update rule against a hand computation on a two-layer net (objective, RMS
normalisation, step, the neurons the strategy picks), its neuron choices, and a run from the CLI with the
standard report and inputs.npz."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxfault
from onnxfault.synthesis.dlfuzz import choose, class_weights, heavy_neurons
from onnxfault.synthesis.fuzzing import normalized, scaled_values

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
W1 = np.array([[0.5, -0.2, 0.3, 0.1], [0.4, 0.6, -0.1, 0.2], [-0.3, 0.2, 0.5, 0.4]], np.float32)
B1 = np.array([0.1, 0.3, 0.05, 0.2], np.float32)
W2 = np.array([[1.0, -0.5, 0.2, 0.3, -0.1, 0.0], [0.3, 0.8, -0.4, 0.1, 0.2, -0.3],
               [-0.6, 0.1, 0.9, -0.2, 0.4, 0.2], [0.2, -0.1, 0.3, 0.7, -0.5, 0.6]], np.float32)


def two_layer_net(path: Path) -> Path:
    """x (N, 3) → h = relu(x W1 + b1) (4 neurons) → scores h W2 (6 classes)."""
    inits = [numpy_helper.from_array(v, n) for v, n in ((W1, "W1"), (B1, "B1"), (W2, "W2"))]
    nodes = [helper.make_node("MatMul", ["x", "W1"], ["m"]), helper.make_node("Add", ["m", "B1"], ["a"]),
             helper.make_node("Relu", ["a"], ["h"]), helper.make_node("MatMul", ["h", "W2"], ["scores"])]
    graph = helper.make_graph(nodes, "two", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
                              [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 6])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def torch_twin():
    """The same net written in torch: Linear(3, 4) with W1ᵀ and B1, ReLU, Linear(4, 6) with W2ᵀ."""
    import torch

    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 6, bias=False))
    with torch.no_grad():
        net[0].weight.copy_(torch.from_numpy(W1.T))
        net[0].bias.copy_(torch.from_numpy(B1))
        net[2].weight.copy_(torch.from_numpy(W2.T))
    return net


def test_one_mutation_is_the_update_rule_by_hand(tmp_path):
    model = two_layer_net(tmp_path / "two.onnx")
    x = np.array([[0.6, 0.3, 0.5]], np.float32)
    h = np.maximum(x.astype(np.float64) @ W1 + B1, 0)
    scores = h @ W2
    active = (h > 0).astype(np.float64)[0]
    assert active.all()  # every neuron on: the net is linear around x, its gradient exact
    scaled = (h[0] - h.min()) / (h.max() - h.min())
    uncovered = np.flatnonzero(~(scaled > 0.25))  # what the seed leaves uncovered; `random` takes them all
    order = np.argsort(-scores[0], kind="stable")
    weights = np.zeros(6)
    weights[order[1:5]] = 0.5
    weights[order[0]] = -1.0
    grad = W1.astype(np.float64) @ (active * (W2.astype(np.float64) @ weights))
    grad += 0.5 * W1.astype(np.float64)[:, uncovered].sum(axis=1)
    want = np.clip(x + 0.02 * grad / (np.sqrt(np.mean(grad ** 2)) + 1e-5), 0, 1)

    result = onnxfault.synthesize(model, (x, np.array([int(order[0])])), method="dlfuzz", samples=1, seed=0,
                                  strategy="random", neurons_to_cover=10, iterations=1, max_change=1e-9, clip_min=0.0, clip_max=1.0)
    got = result.arrays["synthesized"]
    assert len(uncovered) and np.abs(got - want).max() < 1e-6
    assert result.to_json()["mutations"] == 1


def test_the_pieces_by_hand():
    g = np.array([[3.0, -4.0]])
    assert np.allclose(normalized(g), g / (np.sqrt(12.5) + 1e-5))
    w, label = class_weights(np.array([0.1, 0.7, 0.3, 0.5]), 2, 0.5)
    assert label == 1 and w.tolist() == [0.0, -1.0, 0.5, 0.5]
    outputs = [np.array([[[[0.0, 2.0]], [[4.0, 4.0]]]]), np.array([[1.0, 3.0]])]  # a (1, 2, 1, 2) and a (1, 2) layer
    assert np.allclose(scaled_values(outputs, [(2, 3), ()]), [0.25, 1.0, 0.0, 1.0])
    rng = np.random.default_rng(0)
    scaled = np.array([0.3, 0.1, 0.26, 0.9, 0.2])
    picked, signs = choose("threshold", 4, np.zeros(5, np.int64), scaled, 0.25, np.array([]), rng)
    assert picked.tolist() == [0, 2, 1, 4] and signs.tolist() == [1, 1, -1, -1]  # just above up, just below down
    picked, _ = choose("random", 10, np.array([1, 0, 2, 0, 0]), scaled, 0.25, np.array([]), rng)
    assert sorted(picked.tolist()) == [1, 3, 4]  # the uncovered ones
    picked, _ = choose("often", 2, np.array([5, 0, 0, 1, 0]), scaled, 0.25, np.array([]), rng)
    assert sorted(picked.tolist()) == [0, 3]  # only the covered ones have weight


def test_heavy_neurons_follow_the_incoming_weights(tmp_path):
    model = onnxfault.load_model(two_layer_net(tmp_path / "two.onnx"))
    layers = model.select_layers(["h"])
    means = W1.mean(axis=0)  # 0.2, 0.2, 0.233, 0.233: all positive; the top 10 % of 4 neurons is none
    assert heavy_neurons(model, layers, "channel").tolist() == []
    assert heavy_neurons(model, layers, "channel", share=0.5).tolist() == list(np.argsort(-means, kind="stable")[:2])


def test_dlfuzz_from_the_cli_writes_the_standard_run(tmp_path, cli):
    out = tmp_path / "run"
    done = cli("synthesize", EXAMPLES / "mnist_lenet.onnx", "--data", EXAMPLES / "mnist_sample.npz", "--method",
               "dlfuzz", "--samples", "2", "--strategy", "rarely", "--out", out)
    assert done.exit_code == 0, done.output
    report = json.loads((out / "report.json").read_text())
    assert report["method"] == "dlfuzz" and report["params"]["strategy"] == "rarely"
    assert report["mutations"] >= 3 * report["seeds"]["count"] and 0 < report["coverage_after"] <= 1
    with np.load(out / "inputs.npz") as arrays:
        assert arrays["synthesized"].shape == arrays["original"].shape
        assert arrays["synthesized"].min() >= 0 and arrays["synthesized"].max() <= 1
    assert "seeds with an adversarial input" in done.output


@pytest.mark.parametrize("args, message", [
    (["--strategy", "bogus"], "strategy"),
    (["--max-change", "0"], "max_change"),
    (["-k", "3"], "-k"),
])
def test_bad_dlfuzz_options_are_one_line(tmp_path, cli, args, message):
    done = cli("synthesize", EXAMPLES / "mnist_dense.onnx", "--data", EXAMPLES / "mnist_sample.npz", "--method",
               "dlfuzz", *args, "--out", tmp_path / "run")
    lines = done.stderr.strip().splitlines()
    assert done.exit_code != 0 and len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in done.output
    assert message.replace("_", "-") in lines[0] or message in lines[0]
    assert not (tmp_path / "run").exists()
