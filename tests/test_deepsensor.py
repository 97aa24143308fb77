"""DeepSensor: neuron Shapley values (mask surgery, exact vs Monte-Carlo), --measure shapley, PSO fuzzing."""
from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from onnx import TensorProto, helper

from conftest import init, make_model, save
from onnxfault import load_model
from onnxfault.graph import MASK
from onnxfault.loss import cross_entropy
from onnxfault.shapley import (ShapleyOptions, exact_shapley, loss_change_utility, marginal_gains, masked_model,
                               monte_carlo_shapley, normalize_per_layer, prefix_masks)
from onnxfault.synthesis.deepsensor import swarm_step

RNG = np.random.default_rng(7)
W1 = RNG.normal(size=(3, 4)).astype(np.float32)
B1 = RNG.normal(size=4).astype(np.float32) * 0.1
W2 = RNG.normal(size=(4, 3)).astype(np.float32)


@pytest.fixture
def mlp4(tmp_path):
    """x (N,3) → Gemm → Relu h (4 neurons) → Gemm → 3 logits."""
    nodes = [helper.make_node("Gemm", ["x", "W1", "B1"], ["pre"], name="fc1"),
             helper.make_node("Relu", ["pre"], ["h"], name="act1"),
             helper.make_node("Gemm", ["h", "W2"], ["logits"], name="fc2")]
    model = make_model(nodes, [("x", TensorProto.FLOAT, ["N", 3])], [("logits", TensorProto.FLOAT, ["N", 3])],
                       [init("W1", W1), init("B1", B1), init("W2", W2)])
    return save(model, tmp_path / "mlp4.onnx")


def numpy_loss(x, labels, mask):
    """The masked network by hand: h = relu(x W1 + b1) ⊙ mask, logits = h W2."""
    h = np.maximum(x.astype(np.float64) @ W1 + B1, 0) * mask
    return cross_entropy(h @ W2, labels, False)


def test_mask_surgery_zeroes_exactly_the_masked_neurons(mlp4):
    model = load_model(mlp4)
    session, n = masked_model(model, model.layers, "channel")
    assert n == 4
    x = RNG.random((5, 3)).astype(np.float32)
    for mask in ([1, 1, 1, 1], [0, 1, 0, 1], [0, 0, 0, 0]):
        rows = np.tile(np.asarray(mask, np.float32), (5, 1))
        scores = session.run(x, {MASK: rows})[0]
        h = np.maximum(x.astype(np.float64) @ W1 + B1, 0) * np.asarray(mask)
        np.testing.assert_allclose(scores, h @ W2, atol=1e-5)


def test_masks_on_conv_channels_zero_whole_channels(lenet_onnx):
    model = load_model(lenet_onnx)
    conv = model.layers[0]
    session, n = masked_model(model, [conv], "channel")
    x = np.random.default_rng(0).random((2, *model.input_shape)).astype(np.float32)
    mask = np.ones((2, n), np.float32)
    mask[:, 2] = 0
    full = session.run(x, {MASK: np.ones((2, n), np.float32)})[0]
    np.testing.assert_allclose(full, model.session().run(x)[0], atol=1e-5)
    assert not np.allclose(session.run(x, {MASK: mask})[0], full)


def test_prefix_masks_and_marginal_gains_by_hand():
    perms = np.array([[2, 0, 1]])
    masks = prefix_masks(perms)
    assert masks.tolist() == [[0, 0, 0], [0, 0, 1], [1, 0, 1], [1, 1, 1]]
    utilities = np.array([[0.0, 5.0, 7.0, 10.0]])  # v(∅), v({2}), v({0,2}), v(all)
    assert marginal_gains(utilities, perms).tolist() == [[2.0, 3.0, 5.0]]


def test_all_permutations_give_exact_shapley_values_on_the_onnx_game(mlp4):
    model = load_model(mlp4)
    session, n = masked_model(model, model.layers, "channel")
    x = RNG.random((6, 3)).astype(np.float32)
    labels = np.array([0, 1, 2, 0, 1, 2])
    utility = loss_change_utility(session, x, labels, noise=0.3, probabilities=False, seed=1)
    exact = exact_shapley(utility, n)
    # independent: the same game by hand in numpy, enumerated with the Shapley formula over permutations
    noisy = (x + 0.3 * np.random.default_rng(1).standard_normal(x.shape)).astype(np.float32)
    def v(coalition):
        mask = np.isin(np.arange(n), list(coalition)).astype(float)
        return (numpy_loss(noisy, labels, mask) - numpy_loss(x, labels, mask)).mean()
    by_hand = np.zeros(n)
    perms = list(itertools.permutations(range(n)))
    for perm in perms:
        for j, player in enumerate(perm):
            by_hand[player] += v(perm[:j + 1]) - v(perm[:j])
    by_hand /= len(perms)
    np.testing.assert_allclose(exact, by_hand, atol=1e-5)
    values, stderr = monte_carlo_shapley(utility, n, np.array(perms))
    np.testing.assert_allclose(values, exact, atol=1e-6)
    assert np.isclose(values.sum(), v(range(n)) - v(()), atol=1e-5)  # efficiency
    sampled, err = monte_carlo_shapley(utility, n, 400, seed=3)
    assert (err > 0).any() and (np.abs(sampled - exact) <= 4 * err + 1e-9).all()  # dead neurons: err 0, exact


def test_normalisation_is_per_layer_min_max():
    values = np.array([1.0, 3.0, 2.0, -1.0, -1.0, 5.0, 5.0])
    out = normalize_per_layer(values, [3, 2, 2])
    assert out.tolist() == [0.0, 1.0, 0.5, 0.0, 0.0, 0.0, 0.0]


def test_localize_measure_shapley(cli, dense_onnx, sample_npz, tmp_path):
    out = tmp_path / "rank.json"
    r = cli(*["localize", str(dense_onnx), "--data", str(sample_npz), "--measure", "shapley", "-k", "64",
             "--permutations", "5", "--shapley-samples", "20", "--json", str(out), "-q"])
    assert r.exit_code == 0, r.output
    info = json.loads(out.read_text())
    assert info["measure"] == "shapley"
    assert info["params"]["permutations"] == 5 and info["params"]["shapley_samples"] == 20
    scores = np.array([n["score"] for n in info["neurons"]])
    assert scores.min() == 0 and scores.max() == 1 and (np.diff(scores) <= 0).all()
    assert info["params"]["excitable"] == int((scores > 0.5).sum())
    assert all("shapley" in n and n["shapley_stderr"] >= 0 for n in info["neurons"])
    for layer in info["layers"]:  # min-max per layer: each layer has a 1 and a 0
        own = [n["score"] for n in info["neurons"] if n["tensor"] == layer["tensor"]]
        assert max(own) == 1 and min(own) == 0


@pytest.mark.parametrize("flags, message", [
    (["--permutations", "0"], "--permutations must be at least 1"),
    (["--noise", "0"], "--noise must be > 0"),
    (["--lambda", "2"], "--lambda must be in [0, 1]"),
])
def test_shapley_bad_input(cli, dense_onnx, sample_npz, flags, message):
    r = cli("localize", str(dense_onnx), "--data", str(sample_npz), "--measure", "shapley", *flags)
    assert r.exit_code == 1 and message in r.output and "Traceback" not in r.output


def test_swarm_step_keeps_particles_in_the_box():
    rng = np.random.default_rng(0)
    low, high = -rng.random((3, 1, 5)), rng.random((3, 1, 5))
    pos = low + (high - low) * rng.random((3, 4, 5))
    vel = np.zeros_like(pos)
    for _ in range(20):
        pos, vel = swarm_step(pos, vel, pos[:, ::-1], pos[:, :1], 0.7, 0.05, low, high, rng)
        assert (pos >= low).all() and (pos <= high).all() and (np.abs(vel) <= 0.05).all()


def test_deepsensor_run(cli, dense_onnx, sample_npz, tmp_path):
    out = tmp_path / "run"
    r = cli(*["synthesize", str(dense_onnx), "--data", str(sample_npz), "--method", "deepsensor", "--samples", "2",
             "--population", "10", "--iterations", "5", "--permutations", "5", "--shapley-samples", "20",
             "--distance", "0.2", "--out", str(out), "-q"])
    assert r.exit_code == 0, r.output
    report = json.loads((out / "report.json").read_text())
    arrays = np.load(out / "inputs.npz")
    change = np.abs(arrays["synthesized"] - arrays["original"])
    assert change.max() <= 0.2 + 1e-6 and arrays["synthesized"].min() >= 0 and arrays["synthesized"].max() <= 1
    assert report["params"]["population"] == 10 and report["params"]["measure"] == "shapley"
    assert all(n["score"] > 0.5 for n in report["neurons"])
    seeds = report["seeds"]["count"]
    assert report["examples_evaluated"] <= seeds * 10 * 6
    assert report["error_categories"] <= min(report["test_errors"], 9 * seeds)
    assert report["categories_per_seed"] == pytest.approx(report["error_categories"] / seeds)
    assert report["seeds_with_errors"] <= report["error_categories"]


@pytest.mark.parametrize("flags, message", [
    (["--population", "1"], "--population must be at least 2"),
    (["--measure", "ochiai"], "deepsensor chooses neurons by Shapley value"),
])
def test_deepsensor_bad_input(cli, dense_onnx, sample_npz, tmp_path, flags, message):
    out = tmp_path / "run"
    r = cli(*["synthesize", str(dense_onnx), "--data", str(sample_npz), "--method", "deepsensor", *flags,
             "--out", str(out)])
    assert r.exit_code == 1 and message in r.output and not out.exists()
