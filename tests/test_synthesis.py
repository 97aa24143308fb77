"""Synthesis: a DeepFault step by hand, the L∞/range guarantees of every method, the HS sub-model gradient
equal to the full model's, targeted runs, and the `synthesize` command's files and errors."""
from __future__ import annotations

import json

from dataclasses import replace

import numpy as np
import pytest
from onnx import TensorProto, helper

from onnxfault import graph, load_model
from onnxfault.adapters.gradients import Differentiable, NeuronGroup
from onnxfault.localization import SuspiciousNeuron
from onnxfault.synthesis import METHODS, synthesize
from onnxfault.synthesis.base import Problem
from onnxfault.synthesis.methods import get_method

from conftest import init, make_model, save

W1 = np.array([[1.0, -2.0], [3.0, 0.5]], np.float32)  # h = relu(x @ W1)
W2 = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)


@pytest.fixture
def two_layer(tmp_path):
    nodes = [helper.make_node("Gemm", ["x", "W1"], ["pre"]), helper.make_node("Relu", ["pre"], ["h"]),
             helper.make_node("Gemm", ["h", "W2"], ["logits"])]
    model = make_model(nodes, [("x", TensorProto.FLOAT, ["N", 2])], [("logits", TensorProto.FLOAT, ["N", 2])],
                       [init("W1", W1), init("W2", W2)])
    return load_model(save(model, tmp_path / "two.onnx"))


def neuron(tensor, index, rank=1):
    return SuspiciousNeuron(rank, tensor, index, 1.0, 0, 0, 0, 0)


def problem(model, x, neurons, *, method="deepfault", distance=None, clip=(-10.0, 10.0), target=None, **options):
    layers = {layer.tensor: layer for layer in model.select_layers("all")}
    chosen = get_method(method).make_options({"distance": distance, **options})
    return Problem(model, np.asarray(x, np.float32), np.zeros(len(x), np.int64), neurons, layers, "element", target,
                   clip, chosen, "cpu")


def test_one_deepfault_step_by_hand(two_layer):
    # x = (1, 1): pre = x @ W1 = (4, -1.5). The ascended values are the pre-activations of h0 and h1
    # (DeepFault differentiates the Dense outputs), with gradients W1[:,0] = (1, 3) and W1[:,1] = (-2, 0.5).
    # Their mean (-0.5, 1.75) times step 0.2 gives the change (-0.1, 0.35). (--gradient raw; the
    # normalised default is pinned in test_fidelity_deepfault.py.)
    def raw(p):
        return get_method("deepfault").run(replace(p, options=replace(p.options, gradient="raw")))

    p = problem(two_layer, [[1.0, 1.0]], [neuron("h", 0), neuron("h", 1, 2)], step=0.2)
    assert np.allclose(raw(p), [[0.9, 1.35]], atol=1e-6)
    # d = 0.2 clips the second coordinate's change to +0.2; the range [0, 1.25] caps a larger one
    p = problem(two_layer, [[1.0, 1.0]], [neuron("h", 0), neuron("h", 1, 2)], step=0.2, distance=0.2, clip=(0, 1.25))
    assert np.allclose(raw(p), [[0.9, 1.2]], atol=1e-6)
    p = problem(two_layer, [[1.0, 1.0]], [neuron("h", 0)], step=0.2, distance=0.5, clip=(0, 1.25))
    assert np.allclose(raw(p), [[1.2, 1.25]], atol=1e-6)
    # h1 is an inactive ReLU here (pre-activation -1.5): it still gets the gradient (-2, 0.5)
    p = problem(two_layer, [[1.0, 1.0]], [neuron("h", 1)], step=0.2)
    assert np.allclose(raw(p), [[0.6, 1.1]], atol=1e-6)


@pytest.mark.parametrize("method", sorted(["deepfault", "hs", "fgsm", "pgd"]))
@pytest.mark.parametrize("distance, clip", [(0.05, (0.0, 1.0)), (0.3, (0.1, 0.9))])
def test_linf_bound_and_valid_range_always_hold(dense_onnx, sample_npz, method, distance, clip):
    taken = {s.name for s in METHODS[method].option_specs()}
    options = {k: v for k, v in dict(distance=distance, iterations=5, step=0.5, epsilon=0.2).items() if k in taken}
    result = synthesize(dense_onnx, sample_npz, method=method, samples=3, clip_min=clip[0], clip_max=clip[1],
                        **options)
    x, new = result.arrays["original"], result.arrays["synthesized"]
    assert new.dtype == np.float32 and new.shape == x.shape
    assert np.abs(new - x).max() <= distance + 1e-6
    assert new.min() >= clip[0] and new.max() <= clip[1]
    assert result.report["distance"]["linf"]["max"] <= distance + 1e-6


def test_hs_without_bound_still_clips(dense_onnx, sample_npz):
    result = synthesize(dense_onnx, sample_npz, method="hs", samples=2, distance=None, iterations=40, epsilon=0.05)
    new = result.arrays["synthesized"]
    assert result.report["params"]["distance"] is None
    assert result.report["distance"]["linf"]["max"] > 0.1 and new.min() >= 0.0 and new.max() <= 1.0


def test_sub_model_gradient_equals_full_model_gradient(lenet_onnx):
    model = load_model(lenet_onnx)
    x = np.random.default_rng(0).random((4, 1, 28, 28), dtype=np.float32)
    groups = [NeuronGroup(0, (2, 3), (1, 4, 5)), NeuronGroup(1, (), (7, 100))]
    sub = Differentiable(graph.cut_at(model.proto, ["relu2", "relu3"]), "cpu")
    full = Differentiable(graph.expose_outputs(model.scores_only(), ["relu2", "relu3"]), "cpu")
    full_groups = [NeuronGroup(g.output + 1, g.axes, g.indices) for g in groups]  # output 0 is the class scores
    (g_sub, v_sub), (g_full, v_full) = sub.neuron_ascent(x, groups), full.neuron_ascent(x, full_groups)
    assert len(graph.cut_at(model.proto, ["relu3"]).graph.node) < len(model.proto.graph.node)
    assert np.allclose(v_sub, v_full) and np.abs(g_sub).max() > 0
    assert np.allclose(g_sub, g_full, atol=1e-7)


@pytest.mark.parametrize("method", ["hs", "pgd"])
def test_targeted_runs_raise_the_target_rate(dense_onnx, sample_npz, method):
    result = synthesize(dense_onnx, sample_npz, method=method, target=9, samples=5, distance=0.3, iterations=30)
    r = result.report
    assert r["target_rate_before"] == 0.0 and r["target_rate"] > 0.1
    assert 9 not in result.arrays["labels"]


def test_registry_lists_every_method():
    get_method("hs")
    assert {"deepfault", "hs", "fgsm", "pgd"} <= set(METHODS)


# ---- the command ------------------------------------------------------------------------------------
def test_synthesize_writes_report_inputs_and_picture(cli, dense_onnx, sample_npz, tmp_path):
    from PIL import Image

    out = tmp_path / "run"
    result = cli("synthesize", dense_onnx, "--data", sample_npz, "--method", "deepfault", "--class", "3",
                 "--samples", "4", "--out", out)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    for key in ("method", "params", "neurons", "seeds", "accuracy_before", "accuracy_after", "loss_after",
                "success_rate", "target_rate", "distance", "activation_increase", "seconds", "peak_memory_mb", "device"):
        assert key in report
    assert set(report["distance"]) == {"l0", "l1", "l2", "linf"} and report["seeds"]["count"] == 4
    assert report["accuracy_before"] == 1.0 and report["device"] == "cpu" and report["peak_memory_mb"] > 0
    with np.load(out / "inputs.npz", allow_pickle=False) as arrays:
        assert set(arrays.files) == {"original", "synthesized", "labels", "predictions_before", "predictions_after",
                                     "run_id"}
        assert str(arrays["run_id"]) == report["run_id"]  # the report and the arrays of one run
        assert (arrays["labels"] == 3).all() and arrays["original"].shape == (4, 1, 28, 28)
        changed = arrays["predictions_after"] != arrays["labels"]
        assert report["success_rate"] == pytest.approx(changed.mean())
    with Image.open(out / "samples.png") as picture:
        assert picture.size[0] > 200 and picture.size[1] > 200


def test_neurons_from_a_localize_file(cli, dense_onnx, sample_npz, tmp_path):
    ranking = tmp_path / "rank.json"
    assert cli("localize", dense_onnx, "--data", sample_npz, "--class", "5", "-k", "3", "--json", ranking,
               "-q").exit_code == 0
    out = tmp_path / "run"
    assert cli("synthesize", dense_onnx, "--data", sample_npz, "--method", "hs", "--class", "5", "--samples", "2",
               "--neurons", ranking, "--out", out, "-q").exit_code == 0
    report = json.loads((out / "report.json").read_text())
    assert [(n["tensor"], n["index"]) for n in report["neurons"]] == \
        [(n["tensor"], n["index"]) for n in json.loads(ranking.read_text())["neurons"]]


@pytest.fixture
def quantized_model(tmp_path):
    """A fake-quantized hidden layer (QuantizeLinear → DequantizeLinear): onnxruntime runs it, the ONNX→torch
    adapter does not convert quantized ops."""
    nodes = [helper.make_node("Gemm", ["x", "W1"], ["g"]), helper.make_node("QuantizeLinear", ["g", "s", "z"], ["q"], name="quant"),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["d"]), helper.make_node("Relu", ["d"], ["h"]),
             helper.make_node("Gemm", ["h", "W2"], ["logits"])]
    model = make_model(nodes, [("x", TensorProto.FLOAT, ["N", 784])], [("logits", TensorProto.FLOAT, ["N", 10])],
                       [init("W1", np.ones((784, 4)) / 784), init("W2", np.eye(4, 10)), init("s", 0.01),
                        helper.make_tensor("z", TensorProto.UINT8, [], [0])], opset=18)
    return save(model, tmp_path / "quantized.onnx")


BAD = {
    "cut not downstream": (["--method", "hs", "--cut", "relu1", "--layers", "relu2"], "--cut relu1 is not downstream"),
    "target out of range": (["--method", "fgsm", "--target", "12"], "--target 12 is out of range"),
    "distance not positive": (["--method", "pgd", "--distance", "0"], "--distance must be > 0"),
    "unknown method": (["--method", "deepfool"], "unknown method 'deepfool'"),
    "out not writable": (["--method", "fgsm", "--out", "{tmp}/missing/dir/run"], "cannot write to --out"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_synthesize_bad_input(cli, dense_onnx, sample_npz, tmp_path, case):
    args, message = BAD[case]
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    if "--out" not in args:
        args += ["--out", str(tmp_path / "run")]
    result = cli("synthesize", dense_onnx, "--data", sample_npz, *args)
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1 and lines[0].startswith("error: "), result.output
    if message:
        assert message in lines[0]
    assert not (tmp_path / "run").exists() and not list(tmp_path.glob(".run.*"))


def test_no_correct_seed_is_reported(cli, dense_onnx, sample_npz, tmp_path):
    with np.load(sample_npz) as d:
        x, y = d["x"], d["y"]
    wrong = (y + 1) % 10  # every label wrong: nothing is correctly classified
    data = tmp_path / "wrong.npz"
    np.savez(data, x=x[:50], y=wrong[:50])
    result = cli("synthesize", dense_onnx, "--data", data, "--method", "fgsm", "--out", tmp_path / "run")
    assert result.exit_code == 1 and "no correctly classified sample of any class" in result.stderr


def test_unsupported_op_is_named(cli, quantized_model, tmp_path):
    data = tmp_path / "d.npz"
    np.savez(data, x=np.random.default_rng(0).random((20, 784), dtype=np.float32), y=np.zeros(20, np.int64))
    result = cli("synthesize", quantized_model, "--data", data, "--method", "deepfault", "--out", tmp_path / "run")
    assert result.exit_code == 1 and not (tmp_path / "run").exists()
    (line,) = result.stderr.strip().splitlines()
    assert "does not support op QuantizeLinear (node 'quant'); nearest supported: " in line
    assert line.endswith("`onnxfault inspect --ops` lists every supported op")


def test_chunked_runs_equal_one_batch(dense_onnx, sample_npz):
    from onnxfault.data import DataOptions

    whole = synthesize(dense_onnx, sample_npz, method="pgd", samples=3, iterations=3)
    chunked = synthesize(dense_onnx, sample_npz, method="pgd", samples=3, iterations=3,
                         data_options=DataOptions(batch_size=7))
    assert np.array_equal(whole.arrays["original"], chunked.arrays["original"])
    assert np.allclose(whole.arrays["synthesized"], chunked.arrays["synthesized"], atol=1e-6)
