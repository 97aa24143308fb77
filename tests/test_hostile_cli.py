"""Hostile input at the CLI boundary: option values, indices, JSON, NaN models, tensor names and paths that
hold rich markup or control characters. Every bad case is one ``error:`` line, exit code 1, no traceback
and no file left behind; ``--debug`` (or ONNXFAULT_DEBUG=1) shows the traceback."""
from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import typer
from onnx import TensorProto, helper
from typer.testing import CliRunner

from onnxfault.cli import app, handles_errors, shown
from onnxfault.errors import OnnxFaultError

from conftest import init, make_model, save

NAMES = ("a[/x]", "mod[x]", "e\x1b[2J")  # rich closing tag, text that looks like a tag, ESC[2J (clear screen)
DEEP = "[" * 100_000 + "]" * 100_000  # nested beyond Python's recursion limit


def names_model(path, last_weight=None):
    """x (N,4) → three Gemm+Relu layers named NAMES → logits (N,3); ``last_weight`` replaces W4."""
    rng = np.random.default_rng(0)
    nodes, previous = [], "x"
    for i, name in enumerate(NAMES, 1):
        nodes += [helper.make_node("Gemm", [previous, f"W{i}"], [f"p{i}"]), helper.make_node("Relu", [f"p{i}"], [name])]
        previous = name
    nodes.append(helper.make_node("Gemm", [previous, "W4"], ["logits"]))
    weights = [init("W1", rng.normal(size=(4, 5))), init("W2", rng.normal(size=(5, 5))),
               init("W3", rng.normal(size=(5, 5))),
               init("W4", rng.normal(size=(5, 3)) if last_weight is None else last_weight)]
    model = make_model(nodes, [("x", TensorProto.FLOAT, ["N", 4])], [("logits", TensorProto.FLOAT, ["N", 3])], weights)
    return save(model, path)


@pytest.fixture
def work(tmp_path):
    """A tiny model with hostile tensor names, its data, a NaN-weight twin, and localize --json files."""
    models = tmp_path / "in"
    models.mkdir()
    rng = np.random.default_rng(1)
    data = models / "d.npz"
    np.savez(data, x=rng.normal(size=(40, 4)).astype(np.float32), y=np.arange(40) % 3)
    paths = {"model": names_model(models / "names.onnx"), "data": data,
             "nan_model": names_model(models / "nan.onnx", np.full((5, 3), np.nan, np.float32)),
             "deep": models / "deep.json", "latin1": models / "latin1.json", "out": tmp_path / "out"}
    paths["deep"].write_text(DEEP)
    paths["latin1"].write_bytes(b'{"neurons": "\xe9"}')

    def neurons(name, entries, granularity="channel"):
        path = models / f"{name}.json"
        path.write_text(json.dumps({"granularity": granularity, "neurons": [
            {"rank": 1, "score": 1.0, "as": 0, "af": 0, "ns": 0, "nf": 0, **e} for e in entries]}))
        return path

    paths["n_negative"] = neurons("negative", [{"tensor": "mod[x]", "index": -1}])
    paths["n_range"] = neurons("range", [{"tensor": "mod[x]", "index": 5}])
    paths["n_missing"] = neurons("missing", [{"tensor": "gone[/x]", "index": 0}])
    paths["n_float"] = neurons("float", [{"tensor": "mod[x]", "index": 1.5}])
    paths["n_bool"] = neurons("bool", [{"tensor": "mod[x]", "index": True}])
    paths["n_granularity"] = neurons("granularity", [{"tensor": "mod[x]", "index": 0}], "pixel")
    paths["n_empty"] = neurons("empty", [])
    (models / "list.json").write_text("[1, 2]")
    paths["n_list"] = models / "list.json"
    return paths


def single_error(result, message: str, root, before: set) -> None:
    """Exit 1, one ``error:`` line matching ``message``, no traceback, and the files under ``root`` unchanged."""
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert re.search(message, lines[0]), lines[0]
    assert "Traceback" not in result.output
    assert set(root.rglob("*")) == before


LOCALIZE = ["localize", "{model}", "--data", "{data}", "--json", "{out}.json"]
SYNTH = ["synthesize", "{model}", "--data", "{data}", "--out", "{out}", "--samples", "2"]
FLOAT = "must be a finite number \\(got {}\\)"
HOSTILE = {
    # non-finite float options, each named by its flag
    "threshold nan": (LOCALIZE + ["--threshold", "nan"], "--threshold " + FLOAT.format("nan")),
    "threshold inf": (LOCALIZE + ["--threshold", "inf"], "--threshold " + FLOAT.format("inf")),
    "star nan": (LOCALIZE + ["--measure", "dstar", "--star", "nan"], "--star " + FLOAT.format("nan")),
    "noise inf": (LOCALIZE + ["--noise", "inf"], "--noise " + FLOAT.format("inf")),
    "lambda nan": (LOCALIZE + ["--lambda", "nan"], "--lambda " + FLOAT.format("nan")),
    "mean nan": (LOCALIZE + ["--mean", "nan"], "--mean 'nan' holds a value that is not a finite number"),
    "std -inf": (LOCALIZE + ["--std", "1,-inf"], "--std '1,-inf' holds a value that is not a finite number"),
    "step nan": (SYNTH + ["--method", "pgd", "--step", "nan"], "--step " + FLOAT.format("nan")),
    "epsilon inf": (SYNTH + ["--method", "hs", "--epsilon", "inf"], "--epsilon " + FLOAT.format("inf")),
    "distance inf": (SYNTH + ["--method", "fgsm", "--distance", "inf"], "fgsm: --distance " + FLOAT.format("inf")),
    "distance nan": (SYNTH + ["--method", "fgsm", "--distance", "nan"], "fgsm: --distance " + FLOAT.format("nan")),
    "distance empty": (SYNTH + ["--method", "fgsm", "--distance", ","], "fgsm: --distance ',' is not a number or none"),
    "clip-min nan": (SYNTH + ["--method", "fgsm", "--clip-min", "nan"], "--clip-min " + FLOAT.format("nan")),
    "clip-max -inf": (SYNTH + ["--method", "fgsm", "--clip-max", "-inf"], "--clip-max " + FLOAT.format("-inf")),
    "time-limit nan": (SYNTH + ["--method", "patch", "--time-limit", "nan"], "--time-limit " + FLOAT.format("nan")),
    "time-limit 0": (SYNTH + ["--method", "patch", "--time-limit", "0"], "--time-limit must be > 0"),
    "alpha inf": (SYNTH + ["--method", "patch", "--alpha", "inf"], "patch: --weight-bound " + FLOAT.format("inf")),
    "stop-fitness nan": (SYNTH + ["--method", "deepsensor", "--stop-fitness", "nan"], "--stop-fitness " + FLOAT.format("nan")),
    # ordered and in range
    "clip reversed": (SYNTH + ["--method", "fgsm", "--clip-min", "1", "--clip-max", "0"],
                      "--clip-min 1.0 must be below --clip-max 0.0"),
    "clip empty": (SYNTH + ["--method", "fgsm", "--clip-min", "0.5", "--clip-max", "0.5"], "must be below --clip-max"),
    "clip-min above the data": (SYNTH + ["--method", "fgsm", "--clip-min", "100"], "valid range \\[100, .*\\] is empty"),
    "class -1": (LOCALIZE + ["--class", "-1"], "--class -1 is out of range"),
    "target -1": (SYNTH + ["--method", "fgsm", "--target", "-1"], "--target -1 is out of range"),
    "class -1 with --neurons": (SYNTH + ["--method", "deepfault", "--neurons", "{n_range}", "--class", "-1"],
                                "--class -1 is out of range: the model has classes 0..2"),
    "target too large": (LOCALIZE + ["--target", "3"], "--target 3 is out of range: the model has classes 0..2"),
    # --neurons files
    "neurons index -1": (SYNTH + ["--method", "deepfault", "--neurons", "{n_negative}"],
                         "neuron index -1 of mod\\[x\\] is not a whole number ≥ 0"),
    "neurons index out of range": (SYNTH + ["--method", "deepfault", "--neurons", "{n_range}"],
                                   "neuron index 5 of mod\\[x\\] is out of range \\(the layer has 5 neurons"),
    "neurons tensor missing": (SYNTH + ["--method", "deepfault", "--neurons", "{n_missing}"],
                               "does not fit the model: unknown tensor 'gone\\[/x\\]'"),
    "neurons index 1.5": (SYNTH + ["--method", "deepfault", "--neurons", "{n_float}"], "neuron index 1.5 of mod\\[x\\]"),
    "neurons index true": (SYNTH + ["--method", "deepfault", "--neurons", "{n_bool}"], "neuron index True of mod\\[x\\]"),
    "neurons granularity": (SYNTH + ["--method", "deepfault", "--neurons", "{n_granularity}"],
                            "granularity 'pixel' is neither channel nor element"),
    "neurons empty": (SYNTH + ["--method", "deepfault", "--neurons", "{n_empty}"], "it lists no neurons"),
    "neurons not an object": (SYNTH + ["--method", "deepfault", "--neurons", "{n_list}"], "cannot read neurons from"),
    "neurons nested deeply": (SYNTH + ["--method", "deepfault", "--neurons", "{deep}"], "is nested too deeply"),
    "neurons not UTF-8": (SYNTH + ["--method", "deepfault", "--neurons", "{latin1}"], "is not JSON \\(not UTF-8"),
    # JSON for report
    "report nested deeply": (["report", "{deep}", "-o", "{out}.html"], "is nested too deeply"),
    "report not UTF-8": (["report", "{latin1}", "-o", "{out}.html"], "is not JSON \\(not UTF-8"),
    # non-finite class scores: an error naming the first affected sample (its index in the data)
    "NaN scores evaluate": (["evaluate", "{nan_model}", "--data", "{data}", "--json", "{out}.json"],
                            "class scores for data sample 0 are NaN or infinite.*--allow-nonfinite"),
    "NaN scores localize": (["localize", "{nan_model}", "--data", "{data}", "--classes", "2", "--json", "{out}.json"],
                            "class scores for data sample 2 are NaN"),
    "NaN scores synthesize": (["synthesize", "{nan_model}", "--data", "{data}", "--out", "{out}", "--method", "fgsm"],
                              "class scores for data sample 0 are NaN"),
    # user strings are printed literally
    "markup in a tensor name": (LOCALIZE + ["--layers", "q[/x]"], "unknown tensor 'q\\[/x\\]'; did you mean a\\[/x\\], mod\\[x\\]"),
    "ESC in a tensor name": (LOCALIZE + ["--layers", "z\x1b[2J"], "unknown tensor 'z\\\\x1b\\[2J'"),
    "markup in a path": (["inspect", "{out}[/x]\x1b[2J.onnx"], "model file .*out\\[/x\\]\\\\x1b\\[2J.onnx does not exist"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_input_is_one_error_line(cli, work, tmp_path, case):
    args, message = HOSTILE[case]
    before = set(tmp_path.rglob("*"))
    single_error(cli(*(a.format(**work) for a in args)), message, tmp_path, before)


def test_allow_nonfinite_goes_on(cli, work, tmp_path):
    result = cli("evaluate", work["nan_model"], "--data", work["data"], "--allow-nonfinite", "-q")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("accuracy ")


def test_the_python_api_rejects_the_same(work):
    from onnxfault import evaluation, localization, synthesis
    from onnxfault.data import DataOptions

    model, data = work["model"], work["data"]
    with pytest.raises(OnnxFaultError, match="`threshold` must be a finite number"):
        localization.localize(model, data, threshold=math.nan)
    with pytest.raises(OnnxFaultError, match="`std` must be a finite number"):
        evaluation.evaluate(model, data, data_options=DataOptions(std=[math.inf]))
    with pytest.raises(OnnxFaultError, match="`clip_min` 1 must be below `clip_max` 0"):
        synthesis.synthesize(model, data, method="fgsm", clip_min=1, clip_max=0)
    with pytest.raises(OnnxFaultError, match="fgsm: `distance` must be a finite number"):
        synthesis.synthesize(model, data, method="fgsm", distance=math.inf)
    with pytest.raises(OnnxFaultError, match="data sample 0 are NaN"):
        evaluation.evaluate(work["nan_model"], data)
    assert evaluation.evaluate(work["nan_model"], data, allow_nonfinite=True).samples == 40
    from onnxfault.model import load_model

    with pytest.raises(OnnxFaultError, match="index 5 of mod\\[x\\] is out of range"):
        synthesis.read_neurons(work["n_range"], load_model(model))
    assert synthesis.read_neurons(work["n_range"])[0][0].index == 5  # without a model: the file alone


def test_tensor_names_print_literally(cli, work):
    result = cli("inspect", work["model"])
    assert result.exit_code == 0, result.output
    for name in ("a[/x]", "mod[x]", "e\\x1b[2J"):
        assert name in result.stdout
    assert "\x1b" not in result.stdout
    ranking = cli("localize", work["model"], "--data", work["data"], "--layers", "a[/x],mod[x],e\x1b[2J", "-k", "15")
    assert ranking.exit_code == 0, ranking.output
    assert {"a[/x]", "mod[x]", "e\\x1b[2J"} <= set(re.findall(r"│ (\S+) +│ +\d+ │", ranking.stdout))
    assert "\x1b" not in ranking.output


def test_shown_escapes_control_characters_but_newline():
    assert shown("a\x1b[2Jb\tc\nd\x7f\u202e") == "a\\x1b[2Jb\\tc\nd\\x7f\\u202e"
    assert shown("mod[x] [/x]") == "mod[x] [/x]"  # markup is not touched here: the consoles print no markup


def test_help_keeps_bracketed_text():
    result = CliRunner().invoke(app, ["synthesize", "--help"], env={"COLUMNS": "300"})
    assert result.exit_code == 0
    for text in ("cuda needs onnxfault[gpu]", "[default: ochiai, or the one the method ranks by]", "*-ubyte[.gz]",
                 "scale to [0,1]", "--allow-nonfinite", "needs onnxfault[ray]"):
        assert text in result.output, text


# ---- the boundary itself, on real errors of other libraries --------------------------------------
boundary = typer.Typer(pretty_exceptions_enable=False)


@boundary.command()
@handles_errors
def fail(kind: str, value: float = 0.0) -> None:
    if kind == "recursion":
        json.loads(DEEP)
    elif kind == "memory":
        np.empty(2**62, np.uint8)
    elif kind == "markup":
        from rich.console import Console

        Console().print("closing [/x] with no tag")
    elif kind == "interrupt":
        raise KeyboardInterrupt


@boundary.command()
def other() -> None:
    """A second command, so that ``fail`` is a sub-command as in the real app."""


@pytest.mark.parametrize("kind, message", [("recursion", "RecursionError: maximum recursion depth exceeded"),
                                           ("memory", "error: MemoryError: Unable to allocate.*out of memory: try a smaller --batch-size"),
                                           ("markup", "MarkupError: closing tag '\\[/x\\]'"),
                                           ("value", "--value must be a finite number \\(got nan\\)")])
def test_the_boundary_turns_any_error_into_one_line(tmp_path, kind, message):
    result = CliRunner().invoke(boundary, ["fail", kind, "--value", "nan" if kind == "value" else "0"])
    single_error(result, message, tmp_path, set(tmp_path.rglob("*")))
    if kind != "value":
        assert result.stderr.rstrip().endswith("(rerun with --debug for the traceback)")


def test_ctrl_c_is_one_line_and_exit_130():
    result = CliRunner().invoke(boundary, ["fail", "interrupt"])
    assert result.exit_code == 130 and result.stderr == "error: interrupted\n"


def _run(*args, **env):
    return subprocess.run([sys.executable, "-m", "onnxfault.cli", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, "ONNXFAULT_DEBUG": "", **env}, timeout=120)


@pytest.mark.parametrize("how", ["--debug", "ONNXFAULT_DEBUG=1", "ONNXFAULT_DEBUG=0", "neither"])
def test_debug_shows_the_traceback(tmp_path, how):
    args = ["--debug"] if how == "--debug" else []
    env = {"ONNXFAULT_DEBUG": how.split("=")[1]} if "=" in how else {}
    proc = _run(*args, "inspect", tmp_path / "missing.onnx", **env)
    assert proc.returncode == 1 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert lines[-1] == f"error: model file {tmp_path / 'missing.onnx'} does not exist; check the path"
    if how in ("--debug", "ONNXFAULT_DEBUG=1"):
        assert lines[0] == "Traceback (most recent call last):" and "OnnxFaultError" in lines[-2]
    else:
        assert len(lines) == 1
    assert list(tmp_path.iterdir()) == []


def test_report_numbers_globbed_runs_naturally(cli, work, tmp_path):
    from onnxfault.report.runs import given_order, read_runs

    first = tmp_path / "k1.json"
    assert cli("localize", work["model"], "--data", work["data"], "--json", first, "-q").exit_code == 0
    for k in (5, 10, 20):
        shutil.copy(first, tmp_path / f"k{k}.json")
    globbed = sorted(str(p) for p in tmp_path.glob("k*.json"))  # as the shell expands runs/k*
    assert [p.rsplit("/", 1)[1] for p in globbed] == ["k1.json", "k10.json", "k20.json", "k5.json"]
    assert [r.name for r in read_runs(globbed)] == ["k1", "k5", "k10", "k20"]
    assert given_order(["k20", "k1"]) == ["k20", "k1"]  # an order the user chose is kept
    # a glob between other runs (`report ochiai.json runs/deepfault-k* runs/fgsm`) is ordered within itself
    assert given_order(["o.json", "d-k1", "d-k10", "d-k20", "d-k5", "fgsm"]) == \
        ["o.json", "d-k1", "d-k5", "d-k10", "d-k20", "fgsm"]
    page = tmp_path / "page.html"
    result = cli("report", *globbed, "-o", page)
    assert result.exit_code == 0, result.output
    html = page.read_text()
    assert html.index(">k1<") < html.index(">k5<") < html.index(">k10<") < html.index(">k20<")
