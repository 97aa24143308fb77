"""``retrain``: on the shipped LeNet with 500 benign + 500 synthesized inputs, held-out accuracy stays within a point
and PGD's success falls; the written model differs from the input only in initializer values; ``only="suspicious"``
changes only the rows of the suspicious neurons; the same call twice writes the same bytes; the weights a graph
learns and those that feed a layer, by hand; the CLI writes the model and retrain.json together, the report shows
it, and bad input is one error line with nothing written."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxfault
from onnxfault.retraining import retrain
from onnxfault.weights import Weight, feeding, learned_weights

from test_dlfuzz import two_layer_net

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
LENET = EXAMPLES / "mnist_lenet.onnx"


@pytest.fixture(scope="module")
def split():
    with np.load(EXAMPLES / "mnist_sample.npz") as data:
        x, y = data["x"], data["y"]
    return (x[:500], y[:500]), (x[:1000], y[:1000]), (x[1000:], y[1000:])


@pytest.fixture(scope="module")
def fgsm_run(split, tmp_path_factory):
    """500 FGSM inputs (L∞ 0.1) on 50 seeds per class of images 0–999."""
    folder = tmp_path_factory.mktemp("fgsm") / "run"
    onnxfault.synthesize(LENET, split[1], method="fgsm", samples=50, distance=0.1).save(folder)
    return folder


def _without_initializer_values(proto: onnx.ModelProto) -> bytes:
    copy = onnx.ModelProto()
    copy.CopyFrom(proto)
    for init in copy.graph.initializer:
        value = numpy_helper.to_array(init)
        init.CopyFrom(numpy_helper.from_array(np.zeros_like(value), init.name))
    return copy.SerializeToString()


def test_500_plus_500_keeps_accuracy_and_lowers_pgd_success(split, fgsm_run):
    result = retrain(LENET, split[0], [fgsm_run], heldout=split[2], attack_distance=0.1)
    assert result.samples == {"benign": 500, "synthesized": 500}
    assert abs(result.after["accuracy"] - result.before["accuracy"]) <= 0.01, result.lines()
    assert result.after["attack_success_rate"] < result.before["attack_success_rate"], result.lines()
    original = onnx.load(str(LENET))
    assert _without_initializer_values(result.proto) == _without_initializer_values(original)
    changed = [c["tensor"] for c in result.changes if c["changed"]]
    assert changed and set(changed) <= set(learned_weights(original))
    onnx.checker.check_model(result.proto)


def test_only_the_suspicious_neurons_rows_change(split, tmp_path):
    run = onnxfault.synthesize(LENET, split[1], method="deepfault", samples=2, k=3, layers="relu3")
    neurons = [(n["tensor"], n["index"]) for n in run.report["neurons"]]
    result = retrain(LENET, split[0], [run], only="suspicious", epochs=2, attack_samples=1)
    original = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(LENET)).graph.initializer}
    written = {i.name: numpy_helper.to_array(i) for i in result.proto.graph.initializer}
    named = {w.name: w for w in feeding(onnx.load(str(LENET)), neurons[0][0])}
    assert set(named) == {"fc1.weight", "fc1.bias"}  # relu3 = relu(fc1(x)): fc1's rows of the three neurons
    rows = sorted(index for _, index in neurons)
    for name, value in original.items():
        if name not in named:
            assert written[name].tobytes() == value.tobytes(), name
            continue
        moved = np.flatnonzero(np.any((written[name] != value).reshape(len(value), -1), axis=1))
        assert moved.tolist() == rows, name  # fc1 is a Gemm with transB: axis 0 holds the output units
    assert {c["tensor"]: c["trainable"] for c in result.changes} == {"fc1.weight": 3 * 400, "fc1.bias": 3}


def test_the_same_call_twice_writes_the_same_bytes(split, tmp_path):
    run = onnxfault.synthesize(LENET, split[1], method="fgsm", samples=3)
    models = []
    for i in range(2):
        result = retrain(LENET, (split[0][0][:200], split[0][1][:200]), [run], epochs=2, lr=1e-3, attack_samples=1)
        models.append(result.save_model(tmp_path / f"m{i}.onnx").read_bytes())
    assert models[0] == models[1]
    assert models[0] != LENET.read_bytes()


def test_learned_and_feeding_weights_by_hand(tmp_path):
    proto = onnx.load(str(two_layer_net(tmp_path / "two.onnx")))  # h = relu(x W1 + B1), scores = h W2
    assert learned_weights(proto) == {"W1": Weight("W1", 1), "B1": Weight("B1", 0), "W2": Weight("W2", 1)}
    assert feeding(proto, "h") == [Weight("B1", 0), Weight("W1", 1)]
    assert feeding(proto, "x") == []


def test_the_cli_writes_the_model_and_retrain_json_and_the_report_shows_them(split, cli, tmp_path):
    np.savez(tmp_path / "train.npz", x=split[0][0][:200], y=split[0][1][:200])
    np.savez(tmp_path / "held.npz", x=split[2][0][:300], y=split[2][1][:300])
    onnxfault.synthesize(LENET, split[1], method="fgsm", samples=2).save(tmp_path / "run")
    done = cli("retrain", LENET, "--data", tmp_path / "train.npz", "--inputs", tmp_path / "run", "-o",
               tmp_path / "fixed.onnx", "--heldout", tmp_path / "held.npz", "--epochs", "1", "--attack-distance",
               "0.1")
    assert done.exit_code == 0, done.output
    assert "retrained on 200 benign + 20 synthesized inputs" in done.output and "ΔASR" in done.output
    report = json.loads((tmp_path / "retrain.json").read_text())
    assert report["kind"] == "retrain" and report["command"].startswith("onnxfault")  # the CLI records its call
    assert report["params"]["batch_size"] == 32 and report["before"]["samples"] == 300
    loaded = onnxfault.load(tmp_path / "retrain.json")
    assert loaded.to_json() == report
    fixed = onnxfault.evaluate(tmp_path / "fixed.onnx", tmp_path / "held.npz")
    assert fixed.accuracy == pytest.approx(report["after"]["accuracy"])
    page = cli("report", tmp_path / "retrain.json", "-o", tmp_path / "page.html")
    assert page.exit_code == 0, page.output
    html = (tmp_path / "page.html").read_text()
    assert "Retraining" in html and "Weights changed" in html and "fc1.weight" in html


def _no_weights_model(path: Path) -> Path:
    graph = helper.make_graph([helper.make_node("Softmax", ["x"], ["scores"])], "plain",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


@pytest.mark.parametrize("case, message", [
    ("no weights", "has no learned float weights"),
    ("run on another model", "was made on another model"),
    ("data of another shape", "fit no layout of the model input"),
    ("held-out class the model lacks", "has label 12 but the model has only 10 classes"),
    ("training class the model lacks", "has samples of class 12"),
    ("neurons without --only suspicious", "--neurons chooses the weights of --only suspicious"),
])
def test_bad_input_is_one_line_and_writes_nothing(split, cli, tmp_path, case, message):
    np.savez(tmp_path / "train.npz", x=split[0][0][:50], y=split[0][1][:50])
    model, data, heldout = LENET, tmp_path / "train.npz", []
    onnxfault.synthesize(LENET, split[1], method="fgsm", samples=1).save(tmp_path / "run")
    if case == "no weights":
        model = _no_weights_model(tmp_path / "plain.onnx")
        np.savez(data, x=np.zeros((5, 4), np.float32), y=np.zeros(5, np.int64))
    if case == "run on another model":
        onnxfault.synthesize(EXAMPLES / "mnist_dense.onnx", split[1], method="fgsm", samples=1).save(tmp_path / "run")
    if case == "data of another shape":
        np.savez(data, x=np.zeros((5, 5, 5), np.uint8), y=np.zeros(5, np.int64))
    if case == "held-out class the model lacks":
        np.savez(tmp_path / "held.npz", x=split[2][0][:5], y=np.full(5, 12))
        heldout = ["--heldout", tmp_path / "held.npz"]
    if case == "training class the model lacks":
        np.savez(data, x=split[0][0][:5], y=np.full(5, 12))
    if case == "neurons without --only suspicious":
        heldout = ["--neurons", tmp_path / "rank.json"]
        onnxfault.localize(LENET, split[2], k=3).save(tmp_path / "rank.json")
    done = cli("retrain", model, "--data", data, "--inputs", tmp_path / "run", "-o", tmp_path / "fixed.onnx",
               "--epochs", "1", *heldout)
    lines = done.stderr.strip().splitlines()
    assert done.exit_code == 1 and len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], \
        done.output
    assert "Traceback" not in done.output
    assert not (tmp_path / "fixed.onnx").exists() and not (tmp_path / "retrain.json").exists()


def test_one_pgd_step_of_adversarial_training_by_hand(tmp_path):
    import torch

    from onnxfault.adapters.onnx2torch.module import OnnxModule
    from onnxfault.adapters.training import _pgd
    from test_dlfuzz import B1, W1, W2

    module = OnnxModule(onnx.load(str(two_layer_net(tmp_path / "two.onnx"))))
    x = np.array([[0.6, 0.3, 0.5]], np.float32)
    label = 2
    h = x.astype(np.float64) @ W1 + B1
    assert (h > 0).all()  # every neuron on: the net is linear around x
    scores = h @ W2
    p = np.exp(scores - scores.max()) / np.exp(scores - scores.max()).sum()
    grad = ((p - np.eye(6)[label]) @ W2.T) @ W1.T
    want = np.clip(x + 0.05 * np.sign(grad), np.maximum(x - 0.1, 0), np.minimum(x + 0.1, 1))
    loss = lambda batch, target: torch.nn.functional.cross_entropy(module(batch)[0], target)  # noqa: E731
    got = _pgd(loss, torch.from_numpy(x), torch.tensor([label]), (0.1, 1, 0.05), (0.0, 1.0)).numpy()
    assert np.abs(got - want).max() < 1e-6


def test_pgd_adversarial_training_runs_and_is_recorded(split):
    run = onnxfault.synthesize(LENET, split[1], method="fgsm", samples=1)
    result = retrain(LENET, (split[0][0][:64], split[0][1][:64]), [run], epochs=1, adversarial="pgd",
                     pgd=(0.1, 3, 0.03), attack_samples=1)
    assert result.params["adversarial"] == "pgd" and result.params["pgd"] == [0.1, 3, 0.03]
    assert any(c["changed"] for c in result.changes)
