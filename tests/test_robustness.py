"""``robustness``: FID against an independent numpy computation, CLEVER against ART's own on a torch twin of the same
net, the CLI's JSON, load and report, and bad input as one error line."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import onnxfault
from onnxfault.robustness import frechet_distance

from test_dlfuzz import B1, W1, W2, torch_twin, two_layer_net

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_fid_equals_a_numpy_computation():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(40, 3))
    b = rng.normal(0.5, 2.0, size=(30, 3)) @ np.array([[1.0, 0.2, 0.0], [0.0, 1.0, 0.3], [0.1, 0.0, 1.0]])
    sa, sb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    values, vectors = np.linalg.eigh(sa)
    half = vectors @ np.diag(np.sqrt(values)) @ vectors.T  # Σa^½; Tr (Σa Σb)^½ = Tr (Σa^½ Σb Σa^½)^½
    trace_root = np.sqrt(np.linalg.eigvalsh(half @ sb @ half)).sum()
    want = np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(sa) + np.trace(sb) - 2 * trace_root
    assert frechet_distance(a, b) == pytest.approx(want, rel=1e-10)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)


def test_clever_equals_arts_own_on_a_torch_twin(tmp_path):
    pytest.importorskip("art")
    import torch
    from art.estimators.classification import PyTorchClassifier
    from art.metrics import clever_u

    x = np.random.default_rng(0).random((40, 3)).astype(np.float32)
    y = (np.maximum(x @ W1 + B1, 0) @ W2).argmax(1)
    result = onnxfault.robustness(two_layer_net(tmp_path / "two.onnx"), (x, y), samples=1, clever_seeds=2,
                                  batches=4, batch_size=16, radius=0.2, attack_distance=0.1)
    seeds = onnxfault.synthesize(two_layer_net(tmp_path / "two.onnx"), (x, y), method="pgd", samples=1, seed=0,
                                 distance=0.1, step=0.01, iterations=20).arrays["original"]
    net = torch_twin()
    twin = PyTorchClassifier(net, loss=torch.nn.CrossEntropyLoss(), input_shape=(3,), nb_classes=6,
                             clip_values=tuple(result.params["clip"]))
    want = []
    for i, seed in enumerate(seeds[:2]):
        np.random.seed(i)
        want.append(clever_u(twin, seed, 4, 16, 0.2, np.inf, verbose=False))
    assert result.clever == pytest.approx(want, rel=1e-4)
    assert result.seeds == len(seeds) and 0 <= result.attack_success_rate <= 1


def test_the_cli_writes_json_that_loads_and_reports(cli, tmp_path):
    run = tmp_path / "run"
    onnxfault.synthesize(EXAMPLES / "mnist_lenet.onnx", EXAMPLES / "mnist_sample.npz", method="fgsm", samples=2,
                         distance=0.1).save(run)
    done = cli("robustness", EXAMPLES / "mnist_lenet.onnx", "--data", EXAMPLES / "mnist_sample.npz", "--samples", "1",
               "--clever-seeds", "0", "--features", f"{EXAMPLES / 'mnist_lenet.onnx'}:relu3", "--inputs", run,
               "--json", tmp_path / "rob.json")
    assert done.exit_code == 0, done.output
    data = json.loads((tmp_path / "rob.json").read_text())
    assert data["kind"] == "robustness" and data["clever"] == [] and data["fid"] > 0
    assert onnxfault.load(tmp_path / "rob.json").to_json() == data
    page = cli("report", tmp_path / "rob.json", "-o", tmp_path / "page.html")
    assert page.exit_code == 0, page.output
    assert "Robustness" in (tmp_path / "page.html").read_text()


@pytest.mark.parametrize("args, message", [
    (["--norm", "3"], "--norm must be inf, 2 or 1"),
    (["--features", "m.onnx:t"], "give both --inputs and --features"),
    (["--radius", "0"], "--radius and --attack-distance must be above 0"),
])
def test_bad_input_is_one_line(cli, tmp_path, args, message):
    done = cli("robustness", EXAMPLES / "mnist_dense.onnx", "--data", EXAMPLES / "mnist_sample.npz", *args,
               "--json", tmp_path / "rob.json")
    lines = done.stderr.strip().splitlines()
    assert done.exit_code == 1 and len(lines) == 1 and message in lines[0], done.output
    assert not (tmp_path / "rob.json").exists()


def test_a_runs_inputs_evaluated_on_another_model_are_reported_as_such(cli, tmp_path):
    run = tmp_path / "run"
    made = onnxfault.synthesize(EXAMPLES / "mnist_lenet.onnx", EXAMPLES / "mnist_sample.npz", method="fgsm",
                                samples=3, distance=0.1)
    made.save(run)
    direct = onnxfault.evaluate(EXAMPLES / "mnist_dense.onnx", (made.arrays["synthesized"], made.arrays["labels"]))
    for data in (run, run / "inputs.npz"):
        moved = onnxfault.evaluate(EXAMPLES / "mnist_dense.onnx", data)
        assert np.array_equal(moved.confusion, direct.confusion)
        assert moved.data == f"the synthesized inputs of {run}"
    done = cli("evaluate", EXAMPLES / "mnist_dense.onnx", "--data", run / "inputs.npz", "-q")
    assert done.exit_code == 0 and f"on the synthesized inputs of {run}" in done.output
