"""HS-FGSM as the paper (Rashedi & Schupp) writes it: the gradient step x + ε·∇ of section 4.2 against torch
autograd, the sign step, the paper's defaults, the cut deciding the neurons (`--cut T` alone, the middle
candidate layer by default), and the whole-process peak memory."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from onnx import TensorProto, helper

from onnxfault import load_model, localize
from onnxfault.localization import SuspiciousNeuron
from onnxfault.synthesis import synthesize
from onnxfault.synthesis.base import Problem
from onnxfault.synthesis.methods import get_method

from conftest import init, make_model, save

RNG = np.random.default_rng(3)
W1, B1 = RNG.normal(size=(3, 4)).astype(np.float32), RNG.normal(size=4).astype(np.float32)
W2, B2 = RNG.normal(size=(4, 3)).astype(np.float32), RNG.normal(size=3).astype(np.float32)
W3 = RNG.normal(size=(3, 2)).astype(np.float32)


@pytest.fixture
def tanh_relu(tmp_path):
    """x (N,3) → Gemm → Tanh t → Gemm → pre → Relu h → Gemm → logits: the gradient depends on x."""
    nodes = [helper.make_node("Gemm", ["x", "W1", "B1"], ["a"]), helper.make_node("Tanh", ["a"], ["t"]),
             helper.make_node("Gemm", ["t", "W2", "B2"], ["pre"]), helper.make_node("Relu", ["pre"], ["h"]),
             helper.make_node("Gemm", ["h", "W3"], ["logits"])]
    model = make_model(nodes, [("x", TensorProto.FLOAT, ["N", 3])], [("logits", TensorProto.FLOAT, ["N", 2])],
                       [init("W1", W1), init("B1", B1), init("W2", W2), init("B2", B2), init("W3", W3)])
    return load_model(save(model, tmp_path / "tanh_relu.onnx"))


def hs_problem(model, x, *, epsilon, iterations, rule, distance=None, clip=(-10.0, 10.0)):
    neurons = [SuspiciousNeuron(1, "h", 0, 1.0, 0, 0, 0, 0), SuspiciousNeuron(2, "h", 2, 0.9, 0, 0, 0, 0)]
    layers = {layer.tensor: layer for layer in model.select_layers("all")}
    options = get_method("hs").make_options(dict(epsilon=epsilon, iterations=iterations, step_rule=rule,
                                                 distance=distance, cut="h"))
    return Problem(model, np.asarray(x, np.float32), np.zeros(len(x), np.int64), neurons, layers, "element", None,
                   clip, options, "cpu")


def autograd_sum_gradient(x: np.ndarray) -> np.ndarray:
    """∇ of pre[0] + pre[2] (h's neurons 0 and 2 are ascended through their pre-activations), per input."""
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    pre = torch.tanh(xt @ torch.tensor(W1, dtype=torch.float64) + torch.tensor(B1, dtype=torch.float64)) \
        @ torch.tensor(W2, dtype=torch.float64) + torch.tensor(B2, dtype=torch.float64)
    (pre[:, 0] + pre[:, 2]).sum().backward()
    return xt.grad.numpy()


X = np.array([[0.2, -0.5, 1.0], [1.5, 0.3, -0.7], [-1.0, -1.0, 0.4]], np.float32)


def test_gradient_rule_is_x_plus_epsilon_times_the_sum_gradient(tanh_relu):
    # one iteration: x + ε·∇(Σ of the k = 2 neurons), ∇ from torch autograd on the same function written by hand
    got = get_method("hs").run(hs_problem(tanh_relu, X, epsilon=0.3, iterations=1, rule="gradient"))
    want = X + 0.3 * autograd_sum_gradient(X)
    assert np.abs(want - X).max() > 0.05  # a real step
    assert np.allclose(got, want, atol=1e-5)
    # two iterations: the second gradient is taken at the first step's result
    got = get_method("hs").run(hs_problem(tanh_relu, X, epsilon=0.3, iterations=2, rule="gradient"))
    first = (X + 0.3 * autograd_sum_gradient(X)).astype(np.float32)
    assert np.allclose(got, first + 0.3 * autograd_sum_gradient(first), atol=1e-5)


def test_sign_rule_and_bounds(tanh_relu):
    got = get_method("hs").run(hs_problem(tanh_relu, X, epsilon=0.3, iterations=1, rule="sign"))
    assert np.allclose(got, X + 0.3 * np.sign(autograd_sum_gradient(X)), atol=1e-6)
    # an L∞ bound and the valid range still hold under the gradient rule
    got = get_method("hs").run(hs_problem(tanh_relu, X, epsilon=5.0, iterations=3, rule="gradient", distance=0.25,
                                          clip=(-1.1, 1.6)))
    assert np.abs(got - X).max() <= 0.25 + 1e-6 and got.min() >= -1.1 and got.max() <= 1.6


def test_defaults_are_the_papers_rq1_settings(dense_onnx, sample_npz):
    defaults = get_method("hs").defaults()
    assert (defaults.epsilon, defaults.iterations, defaults.distance) == (1.0, 5, None)
    result = synthesize(dense_onnx, sample_npz, method="hs", samples=2, k=5, target=0)
    params = result.report["params"]
    assert (params["epsilon"], params["iterations"], params["distance"], params["k"]) == (1.0, 5, None, 5)
    x, new = result.arrays["original"], result.arrays["synthesized"]
    assert np.abs(new - x).max() > 0.1 and new.min() >= 0.0 and new.max() <= 1.0  # unbounded but valid


def test_cut_alone_ranks_only_that_layer(cli, lenet_onnx, sample_npz, tmp_path):
    out = tmp_path / "run"
    result = cli("synthesize", lenet_onnx, "--data", sample_npz, "--method", "hs", "--target", "9", "--cut", "relu3",
                 "-k", "5", "--iterations", "5", "--epsilon", "1", "--distance", "none", "--samples", "2",
                 "--out", out, "-q")
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert (report["params"]["cut"], report["params"]["layers"]) == ("relu3", "relu3")
    assert report["params"]["distance"] is None and report["params"]["step_rule"] == "gradient"
    # the same neurons as a spectrum of relu3 alone
    alone = localize(lenet_onnx, sample_npz, layers="relu3", target=9, k=5).neurons
    assert [(n["tensor"], n["index"]) for n in report["neurons"]] == [(n.tensor, n.index) for n in alone]
    assert "cut at" not in result.stderr


def test_named_layers_upstream_of_the_cut(cli, lenet_onnx, sample_npz, tmp_path):
    out = tmp_path / "run"
    result = cli("synthesize", lenet_onnx, "--data", sample_npz, "--method", "hs", "--cut", "relu3", "--layers",
                 "relu1", "-k", "3", "--samples", "1", "--out", out, "-q")
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["params"]["cut"] == "relu3" and {n["tensor"] for n in report["neurons"]} == {"relu1"}


@pytest.mark.parametrize("model, middle", [("mnist_lenet.onnx", "relu2"), ("mnist_dense.onnx", "relu1")])
def test_default_cut_is_the_middle_candidate_layer(cli, sample_npz, tmp_path, model, middle):
    path = sample_npz.parent / model
    layers = [layer.tensor for layer in load_model(path).layers]
    assert middle == layers[(len(layers) - 1) // 2] != layers[-1]
    out = tmp_path / "run"
    result = cli("synthesize", path, "--data", sample_npz, "--method", "hs", "--samples", "1", "--out", out, "-q")
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["params"]["cut"] == middle and {n["tensor"] for n in report["neurons"]} == {middle}
    lines = [line for line in result.stderr.splitlines() if "--cut" in line]
    assert len(lines) == 1 and f"cut at {middle}, the middle candidate layer" in lines[0]


def test_bad_step_rule_is_one_line(cli, dense_onnx, sample_npz, tmp_path):
    result = cli("synthesize", dense_onnx, "--data", sample_npz, "--method", "hs", "--step-rule", "adam",
                 "--out", tmp_path / "run")
    assert result.exit_code == 1 and not (tmp_path / "run").exists()
    assert result.stderr.strip() == "error: hs: --step-rule must be gradient or sign (got 'adam')"


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) / 1024 for line in fh if line.startswith("VmRSS:"))


@pytest.mark.skipif(not __import__("os").path.exists("/proc/self/clear_refs"), reason="needs Linux /proc")
def test_peak_memory_is_the_whole_process(dense_onnx, sample_npz):
    # 300 MB touched and freed before synthesize: the whole-process peak holds it, the method phase does not
    base = rss_mb()
    block = np.ones(300 * 2**20 // 8)
    del block
    report = synthesize(dense_onnx, sample_npz, method="hs", samples=2).report
    assert report["peak_memory_mb"] >= base + 290
    assert 0 < report["method_peak_memory_mb"] <= report["peak_memory_mb"] - 200
