"""The command line: JSON contracts and one-line errors for bad input (no traceback, nothing written)."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from onnxfault.files import write_npz

from conftest import init, make_model, save


def strict_json(text):
    def refuse(name):
        raise ValueError(f"invalid JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


def test_inspect_json(cli, lenet_onnx):
    result = cli("inspect", lenet_onnx, "--json")
    assert result.exit_code == 0, result.output
    info = strict_json(result.stdout)
    assert info["input"] == {"name": "input", "shape": ["N", 1, 28, 28]}
    assert info["output"]["classes"] == 10 and info["opset"] == 17
    assert [(l["op"], l["shape"], l["neurons"], l["elements"]) for l in info["layers"]] == [
        ("Relu", [6, 28, 28], 6, 4704), ("Relu", [16, 10, 10], 16, 1600), ("Relu", [120], 120, 120),
        ("Relu", [84], 84, 84)]


def test_evaluate_json_matches_numpy(cli, dense_onnx, sample_npz, tmp_path):
    out = tmp_path / "eval.json"
    result = cli("evaluate", dense_onnx, "--data", sample_npz, "--json", out, "--batch-size", "100")
    assert result.exit_code == 0, result.output
    report = strict_json(out.read_text())
    with np.load(sample_npz) as d:
        x, y = d["x"].astype(np.float32)[:, None] / np.float32(255), d["y"]
    session = ort.InferenceSession(str(dense_onnx), providers=["CPUExecutionProvider"])
    predictions = session.run(None, {"input": x})[0].argmax(1)
    assert report["samples"] == len(y) == 2000 and report["device"] == "cpu"
    assert report["accuracy"] == pytest.approx(np.mean(predictions == y), abs=0)
    assert [c["correct"] for c in report["per_class"]] == [int(np.sum((predictions == y) & (y == c))) for c in range(10)]
    assert np.array_equal(np.array(report["confusion"]).sum(1), np.bincount(y, minlength=10))
    assert f"{100 * report['accuracy']:.2f} %" in result.stdout


def test_localize_json_and_spectra(cli, lenet_onnx, sample_npz, tmp_path):
    out, spectra = tmp_path / "rank.json", tmp_path / "spectra.npz"
    result = cli("localize", lenet_onnx, "--data", sample_npz, "--measure", "tarantula", "-k", "7", "--class", "9",
                 "--json", out, "--spectra", spectra)
    assert result.exit_code == 0, result.output
    report = strict_json(out.read_text())
    assert {"model", "measure", "mode", "samples", "failing", "layers", "neurons"} <= report.keys()
    assert (report["measure"], report["mode"], report["class"], report["device"]) == ("tarantula", "class", 9, "cpu")
    assert [set(l) for l in report["layers"]] == [{"tensor", "op", "shape", "neurons", "channel_axis", "scores", "counts"}] * 4
    assert {"command", "created", "versions", "platform", "model_io"} <= report.keys()
    neurons = report["neurons"]
    assert [n["rank"] for n in neurons] == list(range(1, 8))
    assert all(set(n) == {"rank", "tensor", "index", "score", "as", "af", "ns", "nf"} for n in neurons)
    assert all(n["as"] + n["af"] + n["ns"] + n["nf"] == report["samples"] for n in neurons)
    with np.load(spectra, allow_pickle=False) as s:
        assert (s["as"] + s["af"] + s["ns"] + s["nf"] == report["samples"]).all()
        order = np.lexsort((s["index"], -s["layer"], -s["scores"]))[:7]  # ties: deeper layer, then index
        assert [(str(s["tensors"][s["layer"][p]]), int(s["index"][p])) for p in order] == \
            [(n["tensor"], n["index"]) for n in neurons]
        assert s["af"].max() <= report["failing"]
        assert np.concatenate([l["scores"] for l in report["layers"]]).tolist() == s["scores"].tolist()
    assert "top 7 by tarantula" in result.stdout


def test_k_larger_than_neurons_is_clamped_with_a_warning(cli, dense_onnx, sample_npz, tmp_path):
    out = tmp_path / "r.json"
    result = cli("localize", dense_onnx, "--data", sample_npz, "-k", "500", "--json", out, "--quiet")
    assert result.exit_code == 0
    assert "warning: -k 500 is more than the 64 neurons" in result.stderr
    assert len(strict_json(out.read_text())["neurons"]) == 64


def test_measures_command_lists_the_registry(cli):
    result = cli("measures")
    assert result.exit_code == 0 and all(m in result.stdout for m in ("tarantula", "ochiai", "dstar", "random"))


# ---- bad input --------------------------------------------------------------------------------------
@pytest.fixture
def bad(tmp_path, dense_onnx, sample_npz):
    """Paths for every bad-input case."""
    two_inputs = make_model([helper.make_node("Add", ["a", "b"], ["y"])],
                            [("a", TensorProto.FLOAT, ["N", 2]), ("b", TensorProto.FLOAT, ["N", 2])],
                            [("y", TensorProto.FLOAT, ["N", 2])])
    int_input = make_model([helper.make_node("Cast", ["a"], ["y"], to=TensorProto.FLOAT)],
                           [("a", TensorProto.INT64, ["N", 2])], [("y", TensorProto.FLOAT, ["N", 2])])
    text_input = make_model([helper.make_node("Cast", ["a"], ["y"], to=TensorProto.FLOAT)],
                            [("a", TensorProto.STRING, ["N", 2])], [("y", TensorProto.FLOAT, ["N", 2])])
    text = tmp_path / "notes.onnx"
    text.write_text("this is not a model\n" * 20)
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(dense_onnx.read_bytes()[:5000])
    x = np.zeros((10, 28, 28), np.uint8)
    nan = np.zeros((10, 28, 28), np.float32)
    nan[3, 5, 5] = np.nan
    junk = tmp_path / "junk.dat"
    junk.write_bytes(b"\x00\x01garbage" * 10)
    return {
        "model_dir": tmp_path, "model_text": text, "model_truncated": truncated,
        "model_two_inputs": save(two_inputs, tmp_path / "two.onnx"),
        "model_int_input": save(int_input, tmp_path / "int.onnx"),
        "model_text_input": save(text_input, tmp_path / "strings.onnx"),
        "data_junk": junk,
        "data_count": write_npz(tmp_path / "count.npz", {"x": x, "y": np.zeros(9, np.int64)}),
        "data_shape": write_npz(tmp_path / "shape.npz", {"x": np.zeros((10, 5, 5), np.uint8), "y": np.zeros(10, np.int64)}),
        "data_classes": write_npz(tmp_path / "classes.npz", {"x": x, "y": np.arange(10) % 2}),
        "data_floats": write_npz(tmp_path / "floats.npz", {"x": np.zeros((10, 2), np.float32), "y": np.zeros(10, np.int64)}),
        "data_nan": write_npz(tmp_path / "nan.npz", {"x": nan, "y": np.zeros(10, np.int64)}),
        "model": dense_onnx, "data": sample_npz,
    }


BAD = {
    "model is a folder": (["localize", "{model_dir}", "--data", "{data}"], "is not a file"),
    "model is not ONNX": (["localize", "{model_text}", "--data", "{data}"], "not a readable ONNX model|not an ONNX model"),
    "model is truncated": (["localize", "{model_truncated}", "--data", "{data}"], "not a readable ONNX model|fails the ONNX checker"),
    "model has two inputs": (["evaluate", "{model_two_inputs}", "--data", "{data}"],
                             "has 2 inputs \\(a, b\\) but the data holds one array of samples; give one array per input"),
    "model input is strings": (["inspect", "{model_text_input}"], "has type STRING; onnxfault feeds numbers and bools"),
    "float data for an int input": (["evaluate", "{model_int_input}", "--data", "{data_floats}"],
                                    "holds float32 samples, but model input 'a' takes int64 \\(integers\\)"),
    "model missing": (["inspect", "{model_dir}/nope.onnx"], "does not exist"),
    "data missing": (["localize", "{model}", "--data", "{model_dir}/nope.npz"], "data path .* does not exist"),
    "data unreadable": (["localize", "{model}", "--data", "{data_junk}"], "unknown data format"),
    "labels count differs": (["localize", "{model}", "--data", "{data_count}"], "10 samples in 'x' but 9 labels"),
    "data fits no layout": (["evaluate", "{model}", "--data", "{data_shape}"], "fit no layout of the model input \\(1, 28, 28\\)"),
    "empty class subset": (["localize", "{model}", "--data", "{data_classes}", "--class", "7"], "no samples with class 7"),
    "class out of range": (["localize", "{model}", "--data", "{data}", "--class", "10"], "--class 10 is out of range"),
    "target out of range": (["localize", "{model}", "--data", "{data}", "--target", "-1"], "--target -1 is out of range"),
    "class and target": (["localize", "{model}", "--data", "{data}", "--class", "1", "--target", "2"], "exclude each other"),
    "unknown measure": (["localize", "{model}", "--data", "{data}", "--measure", "ochaii"], "unknown measure 'ochaii'; did you mean ochiai"),
    "unknown tensor": (["localize", "{model}", "--data", "{data}", "--layers", "relu_2"], "unknown tensor 'relu_2'; did you mean relu2"),
    "bad granularity": (["localize", "{model}", "--data", "{data}", "--granularity", "pixel"], "unknown granularity 'pixel'"),
    "k below 1": (["localize", "{model}", "--data", "{data}", "-k", "0"], "-k must be at least 1"),
    "NaN in data": (["localize", "{model}", "--data", "{data_nan}"], "data sample 3 contains NaN"),
    "output not writable": (["localize", "{model}", "--data", "{data}", "--json", "{model_dir}/no/such/dir/r.json"], "folder .* does not exist"),
    "cuda without onnxruntime-gpu": (["evaluate", "{model}", "--data", "{data}", "--device", "cuda"], "--device cuda needs"),
    "bad classes list": (["evaluate", "{model}", "--data", "{data}", "--classes", "1,x"], "--classes '1,x' is not a comma-separated list"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_one_line_and_writes_nothing(cli, bad, tmp_path, case):
    if case.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("onnxruntime-gpu is installed here")
    args, message = BAD[case]
    out = tmp_path / "result.json"
    args = [a.format(**bad) for a in args]
    if "--json" not in args and args[0] != "inspect":
        args += ["--json", str(out)]
    before = set(tmp_path.iterdir())
    result = cli(*args)
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    import re

    assert re.search(message, lines[0]), lines[0]
    assert "Traceback" not in result.output
    assert set(tmp_path.iterdir()) == before  # no output, no temp file left behind


def test_real_process_exit_code_and_stderr(tmp_path, sample_npz):
    text = tmp_path / "x.onnx"
    text.write_text("nope")
    proc = subprocess.run([sys.executable, "-m", "onnxfault.cli", "localize", str(text), "--data", str(sample_npz)],
                          capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: ") and proc.stdout == ""


def test_no_failing_sample_warns(cli, lenet_onnx, sample_npz):
    result = cli("localize", lenet_onnx, "--data", sample_npz, "--target", "9", "--classes", "4,7", "-q")
    assert result.exit_code == 0
    assert "warning: no sample is predicted as the target 9" in result.stderr


def test_inspect_ops_lists_the_supported_ops(cli):
    import json

    from onnxfault.adapters.onnx2torch import supported_ops

    listed = cli("inspect", "--ops", "--json")
    assert listed.exit_code == 0 and json.loads(listed.stdout) == supported_ops()
    assert {"Conv", "Attention", "LayerNormalization", "Resize", "ai.onnx.preview:FlexAttention"} <= set(supported_ops())
    table = cli("inspect", "--ops")
    assert table.exit_code == 0 and f"{len(supported_ops())} ONNX ops convert to torch" in table.stdout
    bare = cli("inspect")
    assert bare.exit_code == 1 and "inspect needs a MODEL (or --ops" in bare.stderr
