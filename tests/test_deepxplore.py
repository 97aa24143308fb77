"""DeepXplore on one model: one step of its update rule against a hand computation (objective, RMS
normalisation, the lighting constraint, step), the occlusion and blackout constraints on numbers chosen by hand,
a run from the CLI with the standard report, and its bad input."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import onnxfault
from onnxfault.synthesis.deepxplore import constrained
from onnxfault.synthesis.fuzzing import spatial_axes

from test_dlfuzz import B1, W1, W2, two_layer_net

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_one_step_is_the_update_rule_by_hand(tmp_path):
    model = two_layer_net(tmp_path / "two.onnx")
    x = np.array([[0.6, 0.3, 0.5]], np.float32)
    h = np.maximum(x.astype(np.float64) @ W1 + B1, 0)
    label = int((h @ W2).argmax())
    neuron = int(np.random.default_rng([0, 0]).choice(np.arange(4)))  # the chunk's table starts empty
    weights = np.zeros(6)
    weights[label] = -1.0
    grad = W1.astype(np.float64) @ (W2.astype(np.float64) @ weights) + 0.1 * W1[:, neuron].astype(np.float64)
    grad = grad / (np.sqrt(np.mean(grad ** 2)) + 1e-5)
    want = np.clip(x + 1e-6 * np.full(3, 1e4 * grad.mean()), 0, 1)  # light: every element by 10⁴ · mean
    result = onnxfault.synthesize(model, (x, np.array([label])), method="deepxplore", samples=1, seed=0,
                                  constraint="light", step=1e-6, iterations=1, clip_min=0.0, clip_max=1.0)
    assert np.abs(result.arrays["synthesized"] - want).max() < 1e-7
    assert result.to_json()["steps"] == 1


def test_occlusion_and_blackout_by_hand():
    grad = np.arange(16, dtype=np.float64).reshape(1, 1, 4, 4) - 10  # mean of the top-left 2×2: -7.5
    assert spatial_axes(grad.shape) == (2, 3) and spatial_axes((1, 28, 28, 3)) == (1, 2)
    occluded = constrained(grad, "occl", (1, 2), (2, 2), np.random.default_rng(0))
    assert occluded[0, 0].tolist() == [[0, 0, 0, 0], [0, 0, -4, -3], [0, 0, 0, 1], [0, 0, 0, 0]]
    rng, again = np.random.default_rng(5), np.random.default_rng(5)
    top, left = int(again.integers(0, 3)), int(again.integers(0, 3))
    black = constrained(grad, "blackout", (0, 0), (2, 2), rng)
    patch = grad[0, 0, top:top + 2, left:left + 2]
    expected = np.zeros((4, 4))
    if patch.mean() < 0:
        expected[top:top + 2, left:left + 2] = -1
    assert black[0, 0].tolist() == expected.tolist()


def test_deepxplore_from_the_cli_writes_the_standard_run(tmp_path, cli):
    out = tmp_path / "run"
    done = cli("synthesize", EXAMPLES / "mnist_lenet.onnx", "--data", EXAMPLES / "mnist_sample.npz", "--method",
               "deepxplore", "--samples", "1", "--iterations", "5", "--out", out)
    assert done.exit_code == 0, done.output
    report = json.loads((out / "report.json").read_text())
    assert report["method"] == "deepxplore" and report["params"]["constraint"] == "blackout"
    assert report["steps"] <= 5 * report["seeds"]["count"] and "seeds changed their prediction" in done.output
    with np.load(out / "inputs.npz") as arrays:
        changed = arrays["synthesized"] != arrays["original"]
        assert changed.any() and arrays["synthesized"][changed].max() <= 1 and arrays["synthesized"].min() >= 0


@pytest.mark.parametrize("args, message", [(["--constraint", "fog"], "constraint"), (["--step", "0"], "step")])
def test_bad_deepxplore_options_are_one_line(tmp_path, cli, args, message):
    done = cli("synthesize", EXAMPLES / "mnist_dense.onnx", "--data", EXAMPLES / "mnist_sample.npz", "--method",
               "deepxplore", *args, "--out", tmp_path / "run")
    lines = done.stderr.strip().splitlines()
    assert done.exit_code != 0 and len(lines) == 1 and message in lines[0] and "Traceback" not in done.output
    assert not (tmp_path / "run").exists()


def test_a_rectangle_constraint_needs_an_image(tmp_path):
    model = two_layer_net(tmp_path / "two.onnx")
    x = np.full((1, 3), 0.5, np.float32)
    label = int((np.maximum(x @ W1 + B1, 0) @ W2).argmax())
    with pytest.raises(onnxfault.OnnxFaultError, match="moves a rectangle of an image"):
        onnxfault.synthesize(model, (x, np.array([label])), method="deepxplore", samples=1, constraint="occl")
