"""DeepFault as its paper and code do it: per-neuron RMS-normalised gradients (worked out in closed form),
ties to the deeper layer (Algorithm 1's text), and the random baseline of Table 3 (DeepFault's run.py)."""
from __future__ import annotations

import sys

import numpy as np
import pytest
from onnx import TensorProto, helper

from onnxfault import load_model, localize
from onnxfault.files import write_npz
from onnxfault.localization import SuspiciousNeuron
from onnxfault.synthesis import synthesize
from onnxfault.synthesis.base import Problem
from onnxfault.synthesis.methods import get_method

from conftest import EXAMPLES, init, make_model, save

sys.path.insert(0, str(EXAMPLES))
import deepfault_table3  # noqa: E402

# x (N, 3) → pre1 = x W1 → h1 = relu → pre2 = h1 W2 → h2 = relu → logits = h2 W3
W1 = np.array([[1.0, -1.0, 2.0], [0.0, 2.0, -1.0], [3.0, 1.0, 0.5]])
W2 = np.array([[1.0, 0.0], [0.5, -2.0], [-1.0, 1.0]])
W3 = np.eye(2)
X = np.array([[1.0, 1.0, 1.0], [1.0, -1.0, 0.0]])  # pre1 = (4, 2, 1.5) and (1, -3, 3): h1[1] off for sample 1


def relu_chain(w1, w2, w3):
    """x → pre1 = x w1 → h1 = relu → pre2 = h1 w2 → h2 = relu → logits = h2 w3, with no biases."""
    nodes = [helper.make_node("Gemm", ["x", "W1"], ["pre1"]), helper.make_node("Relu", ["pre1"], ["h1"]),
             helper.make_node("Gemm", ["h1", "W2"], ["pre2"]), helper.make_node("Relu", ["pre2"], ["h2"]),
             helper.make_node("Gemm", ["h2", "W3"], ["logits"])]
    return make_model(nodes, [("x", TensorProto.FLOAT, ["N", len(w1)])],
                      [("logits", TensorProto.FLOAT, ["N", np.shape(w3)[1]])],
                      [init("W1", w1), init("W2", w2), init("W3", w3)])


@pytest.fixture
def deep(tmp_path):
    return load_model(save(relu_chain(W1, W2, W3), tmp_path / "deep.onnx"))


def closed_form_gradients() -> tuple[np.ndarray, np.ndarray]:
    """Input gradients of pre1[0] (W1[:, 0], the same for every sample) and of pre2[1] (W1 · (m ⊙ W2[:, 1]),
    m the sample's active h1 units): (2, 3) each."""
    g_first = np.tile(W1[:, 0], (len(X), 1))
    g_second = ((X @ W1 > 0) * W2[:, 1]) @ W1.T
    return g_first, g_second


def run(model, gradient: str | None, step: float = 0.1) -> np.ndarray:
    layers = {layer.tensor: layer for layer in model.select_layers("all")}
    neurons = [SuspiciousNeuron(1, "h1", 0, 1.0, 0, 0, 0, 0), SuspiciousNeuron(2, "h2", 1, 1.0, 0, 0, 0, 0)]
    options = get_method("deepfault").make_options({"step": step, "distance": None,
                                                    **({} if gradient is None else {"gradient": gradient})})
    p = Problem(model, X.astype(np.float32), np.zeros(len(X), np.int64), neurons, layers, "element", None,
                (-10.0, 10.0), options, "cpu")
    return get_method("deepfault").run(p)


def test_normalized_gradient_by_hand(deep):
    g_first, g_second = closed_form_gradients()
    assert g_second.tolist() == [[4.0, -5.0, -1.5], [2.0, -1.0, 0.5]]  # two scales: RMS is per sample

    def rms(g, axis=1):
        return np.sqrt((g ** 2).mean(axis=axis, keepdims=True)) + 1e-5

    expected = X + 0.1 * (g_first / rms(g_first) + g_second / rms(g_second)) / 2
    assert np.allclose(run(deep, None), expected, atol=1e-6)  # normalized is the default
    assert np.allclose(run(deep, "normalized"), expected, atol=1e-6)
    # an RMS over the whole batch instead of per sample would be another input
    batch_wide = X + 0.1 * (g_first / rms(g_first, None) + g_second / rms(g_second, None)) / 2
    assert not np.allclose(batch_wide, expected, atol=1e-3)


def test_raw_gradient_is_the_plain_mean_and_differs(deep):
    g_first, g_second = closed_form_gradients()
    raw = run(deep, "raw")
    assert np.allclose(raw, X + 0.1 * (g_first + g_second) / 2, atol=1e-6)
    assert not np.allclose(raw, run(deep, "normalized"), atol=1e-2)


def test_gradient_option_is_validated_and_reported(dense_onnx, sample_npz):
    from onnxfault.errors import OnnxFaultError

    with pytest.raises(OnnxFaultError, match="deepfault: `gradient` must be normalized or raw"):
        synthesize(dense_onnx, sample_npz, method="deepfault", samples=1, options={"gradient": "unit"})
    result = synthesize(dense_onnx, sample_npz, method="deepfault", samples=1, options={"gradient": "raw"})
    assert result.report["params"]["gradient"] == "raw"


def test_normalized_step_is_mostly_clipped_at_d(dense_onnx, sample_npz):
    # every neuron's gradient has RMS 1 after normalisation: with step 1 most changed pixels move by d
    normalized, raw = (synthesize(dense_onnx, sample_npz, method="deepfault", samples=2, k=3,
                                  options={"gradient": g}).report["distance"] for g in ("normalized", "raw"))
    assert normalized["linf"]["max"] <= 0.1 + 1e-6
    assert normalized["l1"]["mean"] > raw["l1"]["mean"]


@pytest.fixture
def twin_layers(tmp_path):
    # h2 = relu(h1) = h1: both layers have the same spectrum, so every h2 neuron ties with its h1 twin
    model = relu_chain(np.eye(2), np.eye(2), np.eye(2))
    x = np.array([[2, 1], [1, 2], [-1, 1], [3, -1], [-1, -2], [0.5, 3]], np.float32)
    data = write_npz(tmp_path / "twin.npz", {"x": x, "y": np.array([0, 0, 1, 1, 0, 1])})
    return save(model, tmp_path / "twin.onnx"), data


def test_ties_go_to_the_deeper_layer(twin_layers):
    # predictions (argmax of relu(x), ties to 0): 0 1 1 0 0 1, so samples 1 and 3 fail (F = 2).
    # Neuron 0 is active on 0 1 3 5 (af 2, as 2), neuron 1 on 0 1 2 5 (af 1, as 3):
    # Ochiai 2/√8 and 1/√8 in both layers. Deeper first: h2 before its h1 twin.
    model, data = twin_layers
    result = localize(model, data, measure="ochiai", k=4)
    assert [layer.tensor for layer in result.layers] == ["h1", "h2"]
    assert [(n.tensor, n.index) for n in result.neurons] == [("h2", 0), ("h1", 0), ("h2", 1), ("h1", 1)]
    assert [n.score for n in result.neurons] == pytest.approx([2 / np.sqrt(8)] * 2 + [1 / np.sqrt(8)] * 2)
    assert [(n.tensor, n.index) for n in localize(model, data, measure="ochiai", k=1).neurons] == [("h2", 0)]


def test_random_baseline_draws_as_deepfault_code(dense_onnx, sample_npz):
    # DeepFault's run.py: a layer uniformly from Tarantula's layers (with multiplicity) + Ochiai's and
    # D*'s (once each), then a neuron of it, never a chosen one nor twice the same.
    spectrum = localize(dense_onnx, sample_npz, cls=3, k=1).spectrum
    assert [(l.tensor, l.neurons()) for l in spectrum.layers] == [("relu1", 32), ("relu2", 32)]

    def n(tensor, index):
        return SuspiciousNeuron(1, tensor, index, 0.0, 0, 0, 0, 0)

    chosen = [[n("relu1", 0), n("relu1", 1), n("relu2", 0)], [n("relu2", 1)], [n("relu2", 2)]]
    forbidden = {(m.tensor, m.index) for measure in chosen for m in measure}
    draws = [deepfault_table3.random_neurons(spectrum, chosen, 5, np.random.default_rng(s)) for s in range(200)]
    for drawn in draws:
        picked = [(m.tensor, m.index) for m in drawn]
        assert len(set(picked)) == 5 and not set(picked) & forbidden
    # one draw: weight 2/32 on each of relu1's 30 allowed neurons, 3/32 on relu2's 29 → P(relu1) = 60/147
    first = [deepfault_table3.random_neurons(spectrum, chosen, 1, np.random.default_rng(s))[0].tensor
             for s in range(2000)]
    assert first.count("relu1") / 2000 == pytest.approx(60 / 147, abs=0.035)
    only_deep = [[n("relu2", 0)], [n("relu2", 1)], [n("relu2", 2)]]
    assert {m.tensor for m in deepfault_table3.random_neurons(spectrum, only_deep, 10, np.random.default_rng(0))} \
        == {"relu2"}
