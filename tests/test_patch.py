"""AIGENT (--method patch): the hand-made 2-2-2-2 ReLU net, LP feasibility, re-check on ONNX, bad input."""
from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from conftest import init, make_model, save
from onnxfault import load_model
from onnxfault.errors import OnnxFaultError
from onnxfault.synthesis import synthesize
from onnxfault.synthesis.aigent import MARGIN, attack, input_change, patch_layer, region, relaxed_property, wins
from onnxfault.synthesis.chain import dense_chain
from onnxfault.synthesis.patch import pielou

# z1 = W1 x, h1 = relu(z1); z2 = W2 h1, h2 = relu(z2); logits = W3 h2   (W as (out, in))
W1 = np.array([[2.0, -1.0], [0.5, 1.0]])
W2 = np.array([[1.0, 0.2], [0.2, 1.0]])
W3 = np.eye(2)
SEED = np.array([0.9, 0.1])  # logits (1.81, 0.89): class 0; class 1 wins where x1 > 0.75 x0 (same phases)


def relu_net(tmp_path, act: str = "Relu", name: str = "net.onnx"):
    nodes = [helper.make_node("Gemm", ["x", "W1"], ["z1"], name="fc1", transB=1),
             helper.make_node(act, ["z1"], ["h1"], name="act1"),
             helper.make_node("Gemm", ["h1", "W2"], ["z2"], name="fc2", transB=1),
             helper.make_node("Relu", ["z2"], ["h2"], name="act2"),
             helper.make_node("Gemm", ["h2", "W3"], ["logits"], name="fc3", transB=1)]
    model = make_model(nodes, [("x", TensorProto.FLOAT, ["N", 2])], [("logits", TensorProto.FLOAT, ["N", 2])],
                       [init("W1", W1), init("W2", W2), init("W3", W3)])
    return save(model, tmp_path / name)


def forward(x, w1=W1, w2=W2, w3=W3):
    return w3 @ np.maximum(w2 @ np.maximum(w1 @ x, 0), 0)


def test_reads_the_chain(tmp_path):
    chain = dense_chain(load_model(relu_net(tmp_path)).proto, "logits")
    assert chain.prefix == "x" and chain.slopes == [0.0, 0.0] and chain.nodes == ["fc1", "fc2", "fc3"]
    for got, want in zip(chain.weights, (W1, W2, W3)):
        np.testing.assert_array_equal(got, want.astype(np.float32))
    zs, _ = chain.forward(SEED)
    np.testing.assert_allclose(zs[-1], forward(SEED))


def test_middle_patch_satisfies_the_property_and_its_lp_is_feasible(tmp_path):
    chain = dense_chain(load_model(relu_net(tmp_path)).proto, "logits")
    seed = region(chain, SEED)
    prop = wins(2, 1, 2)
    z_new, s, delta_w = patch_layer(chain, seed, prop, 1)
    # the patched network, run for real (not in the fixed region), now says class 1 with the margin
    logits = forward(SEED, w2=W2 + delta_w)
    assert logits[1] - logits[0] >= MARGIN - 1e-6  # W2 is float32 in the file
    np.testing.assert_allclose((W2 + delta_w) @ np.maximum(W1 @ SEED, 0), z_new)
    # marking: z2_1 raises class 1, z2_0 lowers it; every weight change has its neuron's sign
    assert s.tolist() == [-1.0, 1.0]
    assert (delta_w[0] <= 0).all() and (delta_w[1] >= 0).all()
    # equal magnitudes per neuron (the optimum of the largest change) and phases kept
    assert np.allclose(np.abs(delta_w[1]), np.abs(delta_w[1]).max())
    assert (z_new > 0).all()
    relaxed = relaxed_property(chain, seed, prop, 1, z_new, s)
    assert (relaxed.G @ z_new >= relaxed.g0 - 1e-9).all()  # the patched values satisfy the cut property


def test_attack_finds_an_input_that_onnxruntime_calls_class_1(tmp_path):
    path = relu_net(tmp_path)
    chain = dense_chain(load_model(path).proto, "logits")
    seed = region(chain, SEED)
    session = ort.InferenceSession(str(path))
    for objective in ("pixels", "l1"):
        got = attack(chain, seed, np.eye(2), 1, -SEED, 1 - SEED, objective, None, 10.0)
        assert got.stage == "solved" and got.largest_weight_change > 0
        x = (SEED + got.delta).astype(np.float32)
        assert (x >= -1e-9).all() and (x <= 1 + 1e-9).all()
        assert session.run(None, {"x": x[None]})[0].argmax() == 1
        if objective == "pixels":
            assert np.count_nonzero(np.abs(got.delta) > 1e-9) == 1  # raising x1 alone is enough


def test_input_lp_reports_infeasible_under_a_small_budget(tmp_path):
    chain = dense_chain(load_model(relu_net(tmp_path)).proto, "logits")
    seed = region(chain, SEED)
    got = attack(chain, seed, np.eye(2), 1, np.full(2, -0.01), np.full(2, 0.01), "pixels", None, 10.0)
    assert got.delta is None and "infeasible" in got.stage


def test_input_change_meets_every_row():
    rng = np.random.default_rng(0)
    A, z0 = rng.normal(size=(3, 6)), rng.normal(size=3)
    from onnxfault.synthesis.aigent import Property

    prop = Property(0, rng.normal(size=(2, 3)), np.array([0.1, -0.2]), 2)
    for objective in ("pixels", "l1"):
        delta = input_change(A, z0, prop, np.full(6, -1.0), np.full(6, 1.0), objective)
        assert delta is not None and (prop.G @ (z0 + A @ delta) >= prop.g0 - 1e-7).all()
        assert (np.abs(delta) <= 1 + 1e-9).all()


def test_synthesize_patch_rechecks_on_onnx(tmp_path):
    path = relu_net(tmp_path)
    data = tmp_path / "d.npz"
    np.savez(data, x=np.array([SEED, [0.8, 0.2], [0.1, 0.9]], np.float32), y=np.array([0, 0, 1]))
    result = synthesize(path, data, method="patch", samples=5, distance=None, clip_min=0.0, clip_max=1.0,
                        options={"objective": "pixels"})
    r, a = result.report, result.arrays
    session = ort.InferenceSession(str(path))
    after = session.run(None, {"x": a["synthesized"]})[0].argmax(1)
    attacked = after != a["labels"]
    assert r["defect_detection_rate"] == pytest.approx(attacked.mean())
    assert attacked[:2].all()  # both class-0 seeds can reach class 1 within their region
    assert r["pielou"] == pielou([int(c) for c in after[attacked]], 2)
    assert [s["attacked"] for s in r["per_seed"]] == attacked.tolist()


def test_pielou():
    assert pielou([1, 1, 1], 10) == 0.0
    assert pielou([0, 1], 2) == pytest.approx(1.0)
    assert pielou(list(range(10)), 10) == pytest.approx(1.0)


def test_non_relu_model_names_the_node(tmp_path):
    path = relu_net(tmp_path, act="Tanh", name="tanh.onnx")
    with pytest.raises(OnnxFaultError, match="node 'act1' is Tanh"):
        dense_chain(load_model(path).proto, "logits")


def test_non_feed_forward_model_names_the_node(tmp_path):
    nodes = [helper.make_node("Gemm", ["x", "W1"], ["z1"], name="fc1", transB=1),
             helper.make_node("Relu", ["z1"], ["h1"], name="act1"),
             helper.make_node("Gemm", ["h1", "W2"], ["z2"], name="fc2", transB=1),
             helper.make_node("Add", ["z2", "h1"], ["skip"], name="residual"),
             helper.make_node("Relu", ["skip"], ["h2"], name="act2"),
             helper.make_node("Gemm", ["h2", "W3"], ["logits"], name="fc3", transB=1)]
    model = make_model(nodes, [("x", TensorProto.FLOAT, ["N", 2])], [("logits", TensorProto.FLOAT, ["N", 2])],
                       [init("W1", W1), init("W2", W2), init("W3", W3)])
    with pytest.raises(OnnxFaultError, match="feed-forward network; node 'residual' \\(Add\\) joins"):
        dense_chain(load_model(save(model, tmp_path / "res.onnx")).proto, "logits")


def test_cnn_prefix_must_be_piecewise_linear(tmp_path):
    nodes = [helper.make_node("Conv", ["x", "K"], ["c"], name="conv"),
             helper.make_node("Sigmoid", ["c"], ["s"], name="squash"),
             helper.make_node("Flatten", ["s"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "W"], ["logits"], name="fc", transB=1)]
    model = make_model(nodes, [("x", TensorProto.FLOAT, ["N", 1, 3, 3])], [("logits", TensorProto.FLOAT, ["N", 2])],
                       [init("K", np.ones((1, 1, 2, 2))), init("W", np.ones((2, 4)))])
    with pytest.raises(OnnxFaultError, match="node 'squash' \\(Sigmoid\\) is not"):
        dense_chain(load_model(save(model, tmp_path / "cnn.onnx")).proto, "logits")


def test_patch_on_the_shipped_cnn_goes_through_the_conv_prefix(cli, lenet_onnx, sample_npz, tmp_path):
    out = tmp_path / "run"
    r = cli("synthesize", lenet_onnx, "--data", sample_npz, "--method", "patch", "--class", "3", "--samples", "2",
            "--distance", "none", "--objective", "l1", "--out", out, "-q")
    assert r.exit_code == 0, r.output
    report = json.loads((out / "report.json").read_text())
    a = np.load(out / "inputs.npz")
    session = ort.InferenceSession(str(lenet_onnx))
    after = session.run(None, {session.get_inputs()[0].name: a["synthesized"]})[0].argmax(1)
    assert report["defect_detection_rate"] == pytest.approx((after != a["labels"]).mean())
    assert report["accuracy_after"] == pytest.approx((after == a["labels"]).mean())


@pytest.mark.parametrize("flags, message", [
    (["--objective", "l2"], "--objective must be pixels or l1"),
    (["--max-pixels", "0"], "--max-pixels must be at least 1"),
])
def test_patch_bad_input(cli, dense_onnx, sample_npz, tmp_path, flags, message):
    out = tmp_path / "run"
    r = cli("synthesize", dense_onnx, "--data", sample_npz, "--method", "patch", *flags, "--out", out)
    assert r.exit_code == 1 and message in r.output and not out.exists()
