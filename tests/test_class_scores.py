"""Which output holds the class scores: singleton axes dropped, several candidates refused unless --output
names one; 1000-class models in `evaluate`; synthesis skipping a class without a seed."""
from __future__ import annotations

import json

import numpy as np
import pytest
from onnx import TensorProto, helper

from onnxfault import evaluate, load_model, localize
from onnxfault.errors import OnnxFaultError

from conftest import init, make_model, save

rng = np.random.default_rng(0)
F32 = TensorProto.FLOAT


@pytest.fixture
def conv_scores(tmp_path):
    """(N, 2, 3, 3) → Conv 3×3 → Relu → Conv 1×1 → (N, 4, 1, 1) class scores, as SqueezeNet ends."""
    nodes = [helper.make_node("Conv", ["x", "w1"], ["h"]), helper.make_node("Relu", ["h"], ["a"]),
             helper.make_node("Conv", ["a", "w2"], ["scores"])]
    model = make_model(nodes, [("x", F32, ["N", 2, 3, 3])], [("scores", F32, ["N", 4, 1, 1])],
                       [init("w1", rng.standard_normal((5, 2, 3, 3))), init("w2", rng.standard_normal((4, 5, 1, 1)))])
    return save(model, tmp_path / "conv_scores.onnx")


@pytest.fixture
def two_outputs(tmp_path):
    """x (N, 3) → Gemm → hidden (N, 5) → Relu → Gemm → logits (N, 2); both outputs are rank 2."""
    nodes = [helper.make_node("Gemm", ["x", "w1"], ["hidden"]), helper.make_node("Relu", ["hidden"], ["a"]),
             helper.make_node("Gemm", ["a", "w2"], ["logits"]), helper.make_node("Unsqueeze", ["a", "ax"], ["a3"])]
    model = make_model(nodes, [("x", F32, ["N", 3])],
                       [("hidden", F32, ["N", 5]), ("logits", F32, ["N", 2]), ("a3", F32, ["N", 5, 1])],
                       [init("w1", rng.standard_normal((3, 5))), init("w2", rng.standard_normal((5, 2))),
                        helper.make_tensor("ax", TensorProto.INT64, [1], [2])])
    return save(model, tmp_path / "two.onnx")


def data_for(path, shape, classes, n=40):
    x = rng.standard_normal((n, *shape)).astype(np.float32)
    np.savez(path, x=x, y=np.arange(n) % classes)
    return path


def test_nc11_scores_are_flattened(conv_scores, tmp_path):
    model = load_model(conv_scores)
    assert model.num_classes == 4 and model.declared_output == "scores"
    assert any("singleton axes are dropped" in n for n in model.notes)
    x = rng.standard_normal((6, 2, 3, 3)).astype(np.float32)
    raw = load_model_outputs(conv_scores, x)
    got = model.session("cpu").run(x)[0]
    assert got.shape == (6, 4) and np.array_equal(got, raw.reshape(6, 4))
    # the class-score layer (the last Conv) is excluded; the Relu before it is the only candidate
    assert [layer.tensor for layer in model.layers] == ["a"]
    result = localize(model, data_for(tmp_path / "d.npz", (2, 3, 3), 4), k=2)
    assert result.to_json()["model_io"]["output"] == {"name": "scores", "classes": 4}


def load_model_outputs(path, x):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def test_n1c_scores_are_flattened(tmp_path):
    nodes = [helper.make_node("MatMul", ["x", "w"], ["scores"])]
    model = make_model(nodes, [("x", F32, ["N", 1, 3])], [("scores", F32, ["N", 1, 7])],
                       [init("w", rng.standard_normal((3, 7)))])
    loaded = load_model(save(model, tmp_path / "n1c.onnx"))
    assert loaded.num_classes == 7
    assert loaded.session("cpu").run(np.ones((2, 1, 3), np.float32))[0].shape == (2, 7)


def test_several_candidates_are_refused_and_listed(two_outputs):
    with pytest.raises(OnnxFaultError) as err:
        load_model(two_outputs)
    message = str(err.value)
    assert "hidden (N, 5)" in message and "logits (N, 2)" in message and "a3 (N, 5, 1)" in message
    assert "`output` NAME" in message and "\n" not in message


def test_output_chooses_among_candidates(two_outputs, tmp_path):
    model = load_model(two_outputs, output="logits")
    assert model.output_name == "logits" and model.num_classes == 2
    assert [layer.tensor for layer in model.layers] == ["a"]  # hidden is followed by Relu: a is the neuron layer
    with pytest.raises(OnnxFaultError, match="unknown output 'logit'; did you mean logits"):
        load_model(two_outputs, output="logit")
    with pytest.raises(OnnxFaultError, match="loaded with class-score output 'logits', not 'hidden'"):
        localize(model, data_for(tmp_path / "d.npz", (3,), 2), output="hidden")


def test_output_option_on_the_cli(cli, two_outputs, tmp_path):
    data = data_for(tmp_path / "d.npz", (3,), 2)
    refused = cli("localize", two_outputs, "--data", data)
    assert refused.exit_code == 1 and "--output NAME" in refused.stderr and "Traceback" not in refused.output
    for command in (["inspect", two_outputs], ["evaluate", two_outputs, "--data", data],
                    ["localize", two_outputs, "--data", data, "-q"],
                    ["synthesize", two_outputs, "--data", data, "--method", "fgsm", "--out", tmp_path / "run", "-q"]):
        result = cli(*command, "--output", "logits")
        assert result.exit_code == 0, result.output
    bad = cli("inspect", two_outputs, "--output", "nope")
    assert bad.exit_code == 1 and "unknown output 'nope'" in bad.stderr


def test_flattening_is_said_on_stderr(cli, conv_scores, tmp_path):
    result = cli("evaluate", conv_scores, "--data", data_for(tmp_path / "d.npz", (2, 3, 3), 4), "-q")
    assert result.exit_code == 0 and "singleton axes are dropped" in result.stderr


@pytest.fixture
def wide_classifier(tmp_path):
    """x (N, 8) → Gemm → 150 classes."""
    model = make_model([helper.make_node("Gemm", ["x", "w"], ["logits"])], [("x", F32, ["N", 8])],
                       [("logits", F32, ["N", 150])], [init("w", rng.standard_normal((8, 150)))])
    return save(model, tmp_path / "wide.onnx")


def test_many_classes_sparse_confusion_and_worst_table(cli, wide_classifier, tmp_path):
    data = tmp_path / "d.npz"
    x = rng.standard_normal((600, 8)).astype(np.float32)
    y = rng.integers(0, 150, 600)
    np.savez(data, x=x, y=y)
    result = cli("evaluate", wide_classifier, "--data", data, "--json", tmp_path / "e.json")
    assert result.exit_code == 0, result.output
    info = json.loads((tmp_path / "e.json").read_text())
    assert info["classes"] == 150 and info["confusion_format"] == "sparse"
    dense = np.zeros((150, 150), np.int64)
    predictions = (x @ load_weights(wide_classifier)).argmax(1)
    np.add.at(dense, (y, predictions), 1)
    triples = np.asarray(info["confusion"])
    assert triples.shape[1] == 3 and (triples[:, 2] > 0).all()
    rebuilt = np.zeros_like(dense)
    rebuilt[triples[:, 0], triples[:, 1]] = triples[:, 2]
    assert np.array_equal(rebuilt, dense)
    table_rows = [line for line in result.stdout.splitlines() if line.startswith("│")]
    assert len(table_rows) == 20 and "20 worst of 150 classes" in result.stdout
    accuracy = {c: dense[c, c] / dense[c].sum() for c in range(150) if dense[c].sum()}
    worst = sorted(accuracy, key=lambda c: (accuracy[c], c))[:20]
    assert [int(row.split("│")[1]) for row in table_rows] == worst
    every = cli("evaluate", wide_classifier, "--data", data, "--all-classes")
    assert len([line for line in every.stdout.splitlines() if line.startswith("│")]) == 150  # classes without samples too


def load_weights(path):
    import onnx
    from onnx import numpy_helper

    return numpy_helper.to_array(onnx.load(str(path)).graph.initializer[0])


def test_small_models_keep_a_dense_confusion(dense_onnx, sample_npz):
    info = evaluate(dense_onnx, sample_npz).to_json()
    assert info["confusion_format"] == "dense" and np.asarray(info["confusion"]).shape == (10, 10)


def test_synthesis_skips_a_class_without_seeds(cli, dense_onnx, sample_npz, tmp_path):
    with np.load(sample_npz) as d:
        x, y = d["x"], d["y"]
    model = load_model(dense_onnx)
    predictions = model.session("cpu").run(x.reshape(len(x), *model.input_shape).astype(np.float32) / 255)[0].argmax(1)
    keep = y != 3  # no real 3s; some correctly classified 5s are relabelled 3, so class 3 has only wrong samples
    relabel = np.flatnonzero((y == 5) & (predictions == 5))[:4]
    y = y.copy()
    y[relabel] = 3
    keep[relabel] = True
    data = tmp_path / "no3.npz"
    np.savez(data, x=x[keep], y=y[keep])
    result = cli("synthesize", dense_onnx, "--data", data, "--method", "fgsm", "--samples", "2",
                 "--out", tmp_path / "run", "-q")
    assert result.exit_code == 0, result.output
    assert "class 3 skipped: no correctly classified sample" in result.stderr
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["seeds"]["count"] == 18  # 9 classes × 2
    assert 3 not in np.load(tmp_path / "run" / "inputs.npz")["labels"]
    only3 = cli("synthesize", dense_onnx, "--data", data, "--method", "fgsm", "--class", "3", "--out", tmp_path / "r3")
    assert only3.exit_code == 1 and "no correctly classified sample of class 3" in only3.stderr
