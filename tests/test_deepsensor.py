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
from onnxfault.errors import OnnxFaultError
from onnxfault.localization import SuspiciousNeuron
from onnxfault.shapley import (ShapleyOptions, exact_shapley, loss_change_utility, marginal_gains, masked_model,
                               monte_carlo_shapley, neuron_shapley, normalize, prefix_masks)
from onnxfault.synthesis import METHODS, synthesize
from onnxfault.synthesis.deepsensor import excitable, fitness, inertia, swarm_step

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


def test_normalisation_divides_by_the_largest_value():
    assert normalize(np.array([1.0, 4.0, 2.0, 0.0, -2.0])).tolist() == [0.25, 1.0, 0.5, 0.0, -0.5]
    assert normalize(np.array([0.0, -1.0, -4.0])).tolist() == [0.0, -0.25, -1.0]  # none positive: by |max|
    assert normalize(np.zeros(3)).tolist() == [0.0, 0.0, 0.0]


def as_neurons(scores):
    return [SuspiciousNeuron(i + 1, "h", i, float(s), 0, 0, 0, 0) for i, s in enumerate(scores)]


def test_a_zero_shapley_value_is_never_excitable():
    values = np.array([-0.9, 0.0, 0.3, 0.0, 0.6, -0.2, 0.0, 0.5])
    # the former per-layer min-max, (v - min)/(max - min), put the zeros at 0.6: excitable at λ = 0.5
    assert np.allclose(((values - values.min()) / np.ptp(values))[values == 0], 0.6)
    scores = normalize(values)
    for lam in np.linspace(0, 1, 21):
        kept = [n.index for n in excitable(as_neurons(scores), lam)] if (scores > lam).any() else []
        assert kept == [i for i, v in enumerate(values) if v / 0.6 > lam]  # Definition 3 on ψ / max ψ, by hand
        assert not set(kept) & {1, 3, 6, 0, 5}  # zero and negative values: never
    with pytest.raises(OnnxFaultError, match="no neuron has a normalised Shapley value above `lambda_` 0.0"):
        excitable(as_neurons(normalize(np.array([0.0, -1.0, 0.0]))), 0.0)


def test_a_dead_neuron_has_shapley_value_zero_and_is_not_excitable(tmp_path):
    """x → Gemm → Relu h (4 neurons, neuron 2 never active) → Gemm: its every marginal gain is exactly 0."""
    w1, b1 = W1.copy(), B1.copy()
    w1[:, 2], b1[2] = 0.0, -1.0
    nodes = [helper.make_node("Gemm", ["x", "W1", "B1"], ["pre"]), helper.make_node("Relu", ["pre"], ["h"]),
             helper.make_node("Gemm", ["h", "W2"], ["logits"])]
    path = save(make_model(nodes, [("x", TensorProto.FLOAT, ["N", 3])], [("logits", TensorProto.FLOAT, ["N", 3])],
                           [init("W1", w1), init("B1", b1), init("W2", W2)]), tmp_path / "dead.onnx")
    model = load_model(path)
    x = np.random.default_rng(3).normal(size=(16, 3)).astype(np.float32) * 2
    estimate = neuron_shapley(model, x, np.arange(16) % 3, model.layers, options=ShapleyOptions(permutations=30))
    assert estimate.values[2] == 0 and estimate.normalized[2] == 0 and estimate.values.max() > 0
    np.testing.assert_allclose(estimate.normalized, estimate.values / estimate.values.max())
    assert 2 not in [n.index for n in excitable(as_neurons(estimate.normalized), 0.0)]


def test_localize_measure_shapley(cli, dense_onnx, sample_npz, tmp_path):
    out = tmp_path / "rank.json"
    r = cli(*["localize", str(dense_onnx), "--data", str(sample_npz), "--measure", "shapley", "-k", "64",
             "--permutations", "5", "--shapley-samples", "20", "--json", str(out), "-q"])
    assert r.exit_code == 0, r.output
    info = json.loads(out.read_text())
    assert info["measure"] == "shapley"
    assert info["params"]["permutations"] == 5 and info["params"]["shapley_samples"] == 20
    scores = np.array([n["score"] for n in info["neurons"]])
    raw = np.array([n["shapley"] for n in info["neurons"]])
    assert len(scores) == 64 and scores.max() == 1 and (np.diff(scores) <= 0).all()
    np.testing.assert_allclose(scores, raw / raw.max())  # one scale for all the players: ψ / max ψ
    assert info["params"]["excitable"] == int((raw > 0.5 * raw.max()).sum())
    assert all(n["shapley_stderr"] >= 0 for n in info["neurons"])


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
    (["--population", "1"], "deepsensor: --population must be ≥ 2 (got 1)"),
    (["--measure", "ochiai"], "deepsensor chooses neurons by shapley value, not ochiai; drop --measure"),
    (["--inertia", "0.9"], "deepsensor: --inertia must be two finite numbers ≥ 0, start,end (got '0.9')"),
    (["--inertia", "nan,0.4"], "--inertia must be two finite numbers ≥ 0"),
    (["--inertia", "0.4,inf"], "--inertia must be two finite numbers ≥ 0"),
    (["--inertia", "-0.1,0.9"], "--inertia must be two finite numbers ≥ 0"),
    (["--inertia", "0.4,0.9,1"], "--inertia must be two finite numbers ≥ 0"),
    (["--inertia", "fast,slow"], "--inertia must be two finite numbers ≥ 0"),
])
def test_deepsensor_bad_input(cli, dense_onnx, sample_npz, tmp_path, flags, message):
    out = tmp_path / "run"
    r = cli(*["synthesize", str(dense_onnx), "--data", str(sample_npz), "--method", "deepsensor", *flags,
             "--out", str(out)])
    assert r.exit_code == 1 and message in r.output and not out.exists()


def test_inertia_follows_eq_7():
    """Eq. 7: ω_g = (ω_initial − ω_end)(G_k − g)/G_k + ω_end, g = 0 … G_k − 1; 0.4 → 0.9 by default."""
    assert inertia(0, 20) == pytest.approx(0.4)  # (0.4 - 0.9) * 20/20 + 0.9
    assert inertia(10, 20) == pytest.approx(0.65)  # (0.4 - 0.9) * 10/20 + 0.9
    assert inertia(19, 20) == pytest.approx(0.875)  # (0.4 - 0.9) * 1/20 + 0.9
    assert [inertia(g, 20, 0.9, 0.4) for g in (0, 10, 19)] == pytest.approx([0.9, 0.65, 0.425])
    assert inertia(0, 1) == pytest.approx(0.4)
    options = METHODS["deepsensor"].make_options
    assert options({"inertia": "0.9, 0.4"}).inertia == (0.9, 0.4) and options({"inertia": [0.4, 0.9]}).inertia == (0.4, 0.9)


def test_fitness_divides_by_all_neurons_of_the_layers():
    """Eq. 6: active excitable neurons / num(N), N = every neuron of the layers (6 here), not the 2 excitable."""
    active = np.array([[0, 1, 0, 0, 1, 0], [1, 1, 1, 1, 0, 1], [0, 0, 1, 0, 0, 0]], bool)
    assert fitness(active, np.array([1, 4]), 6).tolist() == [2 / 6, 1 / 6, 0.0]


def hidden_activity(path, x):
    """relu1, relu2 of mnist_dense by onnxruntime on the graph with them as extra outputs (no onnxfault)."""
    import onnx
    import onnxruntime as ort

    proto = onnx.load(path)
    proto.graph.output.extend([helper.make_tensor_value_info(t, TensorProto.FLOAT, None) for t in ("relu1", "relu2")])
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    _, relu1, relu2 = session.run(None, {"input": x})
    return {"relu1": relu1, "relu2": relu2}


def test_deepsensor_fitness_and_inertia_on_a_model(dense_onnx, sample_npz):
    """The reported best fitness is Eq. 6 recomputed by hand on the synthesized inputs; --inertia is used."""
    kwargs = dict(method="deepsensor", samples=1, iterations=4, distance=0.1,
                  shapley=ShapleyOptions(permutations=5, samples=20, lambda_=0.0), seed=0)
    r = synthesize(dense_onnx, sample_npz, options={"population": 8, "inertia": "0.4,0.9"}, **kwargs)
    report, x = r.report, r.arrays["synthesized"]
    assert report["neurons_total"] == 64 and report["params"]["inertia"] == [0.4, 0.9]
    assert all(n["shapley"] > 0 for n in report["neurons"])
    activity = hidden_activity(dense_onnx, x)
    active = np.stack([activity[n["tensor"]][:, n["index"]] > 0 for n in report["neurons"]], axis=1)
    assert report["mean_best_fitness"] == pytest.approx((active.sum(axis=1) / 64).mean())
    assert report["seeds_reaching_stop_fitness"] == 0  # fitness ≤ excitable / 64 < 1 = ε
    assert report["best_examples"] == len(x) * 4 and 0 <= report["best_errors"] <= report["best_examples"]
    assert report["examples_evaluated"] == len(x) * 8 * 5
    other = synthesize(dense_onnx, sample_npz, options={"population": 8, "inertia": (0.9, 0.4)}, **kwargs)
    assert other.report["params"]["inertia"] == [0.9, 0.4]
    assert not np.array_equal(other.arrays["synthesized"], x)
