"""Issue 22: one contract per method, no option ignored, typed results, a library that speaks Python."""
from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import onnxfault
from onnxfault import OnnxFaultError, OnnxFaultWarning
from onnxfault.synthesis import METHODS, Method, register, synthesize
from onnxfault.synthesis.contract import option

ROOT = Path(__file__).resolve().parents[1]


# ---- a method defined here, registered, and run through the API, the CLI and the report -------------------
class Nudge(Method):
    """Moves every seed by ``amount`` towards the valid range's top, in ``steps`` equal steps; counts its steps."""

    name = "nudge"
    summary = "test method: a constant nudge"
    uses_neurons = False
    uses_torch = False
    metrics = ((("nudge_steps",), "nudge steps", "max", False),)

    @dataclass(frozen=True)
    class Options:
        amount: float = option(0.05, "how far each input moves", above=0)
        steps: int = option(2, "in how many steps", minimum=1)

    def run(self, p):
        x = p.x.copy()
        for _ in range(p.options.steps):
            x = p.project(x + p.options.amount / p.options.steps)
        p.stats = p.options.steps * len(x)
        return x

    def merge(self, parts):
        return sum(parts)

    def summarize(self, stats, problem):
        return {"nudge_steps": stats}

    def summary_lines(self, report):
        return [f"nudge: {report['nudge_steps']} steps in all"]


@pytest.fixture(scope="module", autouse=True)
def nudge():
    register(Nudge)
    yield
    METHODS._loaded.pop("nudge", None)


def test_a_method_defined_elsewhere_runs_through_the_api(dense_onnx, sample_npz):
    result = synthesize(dense_onnx, sample_npz, method="nudge", samples=1, amount=0.1, steps=4)
    x, new = result.arrays["original"], result.arrays["synthesized"]
    assert np.allclose(new, np.clip(x + 0.1, 0, 1), atol=1e-6)  # four steps of 0.025, clipped to the range
    assert result.report["params"]["amount"] == 0.1 and result.report["params"]["steps"] == 4
    assert result.report["nudge_steps"] == 4 * len(x)  # merged over the chunks
    with pytest.raises(OnnxFaultError, match=r"nudge does not take `iterations`; it takes `amount` 0.05, `steps` 2"):
        synthesize(dense_onnx, sample_npz, method="nudge", samples=1, iterations=3)


def test_a_method_defined_elsewhere_runs_through_the_cli_and_the_report(cli, dense_onnx, sample_npz, tmp_path):
    help_text = cli("synthesize", "--help").output
    assert "nudge options" in help_text and "--amount" in help_text and "--steps" in help_text
    out = tmp_path / "run"
    r = cli("synthesize", dense_onnx, "--data", sample_npz, "--method", "nudge", "--amount", "0.2", "--samples", "1",
            "--out", out, "--report")
    assert r.exit_code == 0, r.output
    assert "nudge: 20 steps in all" in r.stdout  # the method's own summary line (10 seeds × 2 steps)
    report = json.loads((out / "report.json").read_text())
    assert report["method"] == "nudge" and report["params"]["amount"] == 0.2 and report["nudge_steps"] == 20
    page = (out / "report.html").read_text()
    assert "nudge steps" in page  # its declared metric in the run's table
    r = cli("synthesize", dense_onnx, "--data", sample_npz, "--method", "nudge", "--epsilon", "1", "--out", out)
    assert r.exit_code == 1
    assert r.stderr.strip() == "error: nudge does not take --epsilon; it takes --amount 0.05, --steps 2"


def test_no_shared_layer_names_a_method():
    names = r"\b(deepfault|fgsm|pgd|deepsensor|hotflip)\b|[\"'](hs|patch)[\"']"
    shared = [ROOT / "onnxfault" / "cli.py", ROOT / "onnxfault" / "display.py",
              ROOT / "onnxfault" / "synthesis" / "__init__.py", *(ROOT / "onnxfault" / "report").glob("*.py")]
    found = [f"{path.name}:{i}" for path in shared for i, line in enumerate(path.read_text().splitlines(), 1)
             if re.search(names, line)]
    assert found == []


# ---- no option ignored: the first list of the issue, from the CLI and from Python ---------------------------
@pytest.mark.parametrize("flags, message", [
    (["--method", "pgd", "--epsilon", "0.3"],
     "pgd does not take --epsilon; it takes --distance (--eps) 0.1, --step 0.01, --iterations (--steps) 20"),
    (["--method", "fgsm", "--iterations", "10"], "fgsm does not take --iterations; it takes --distance (--eps) 0.1"),
    (["--method", "fgsm", "--step", "0.3"], "fgsm does not take --step"),
    (["--method", "fgsm", "--measure", "dstar", "-k", "3"],
     "fgsm uses no suspicious neurons, so it does not take --measure or -k; drop them"),
    (["--method", "hs", "--population", "8"], "hs does not take --population"),
    (["--method", "deepfault", "--alpha", "0.5"], "deepfault does not take --alpha"),
])
def test_an_option_the_method_does_not_use_is_an_error(cli, dense_onnx, sample_npz, tmp_path, flags, message):
    r = cli("synthesize", dense_onnx, "--data", sample_npz, *flags, "--samples", "1", "--out", tmp_path / "run")
    assert r.exit_code == 1 and not (tmp_path / "run").exists()
    assert r.stderr.strip().startswith(f"error: {message}")


@pytest.mark.parametrize("method, options, message", [
    ("pgd", {"epsilon": 0.3}, "pgd does not take `epsilon`"),
    ("fgsm", {"iterations": 10}, "fgsm does not take `iterations`"),
    ("fgsm", {"step": 0.3}, "fgsm does not take `step`"),
    ("fgsm", {"measure": "dstar", "k": 3}, "fgsm uses no suspicious neurons, so it does not take `measure` or `k`"),
])
def test_the_same_cases_from_python(dense_onnx, sample_npz, method, options, message):
    with pytest.raises(OnnxFaultError, match=re.escape(message)) as caught:
        synthesize(dense_onnx, sample_npz, method=method, samples=1, **options)
    assert caught.value.parameter == next(iter(options))


def test_ecosystem_names_are_aliases(cli, dense_onnx, sample_npz, tmp_path):
    r = cli("synthesize", dense_onnx, "--data", sample_npz, "--method", "pgd", "--eps", "0.3", "--steps", "4",
            "--samples", "1", "--out", tmp_path / "run", "-q")
    assert r.exit_code == 0, r.output
    params = json.loads((tmp_path / "run" / "report.json").read_text())["params"]
    assert (params["distance"], params["iterations"], params["step"]) == (0.3, 4, 0.01)
    python = synthesize(dense_onnx, sample_npz, method="pgd", samples=1, eps=0.3, steps=4).report["params"]
    assert {k: python[k] for k in ("distance", "iterations")} == {"distance": 0.3, "iterations": 4}
    with pytest.raises(OnnxFaultError, match="`eps` and `distance` are the same option"):
        synthesize(dense_onnx, sample_npz, method="pgd", samples=1, eps=0.3, distance=0.2)


def test_patch_alpha_is_renamed_weight_bound_and_the_old_name_still_runs(dense_onnx, sample_npz):
    with pytest.warns(OnnxFaultWarning, match="patch: `alpha` is deprecated, use `weight_bound`"):
        result = synthesize(dense_onnx, sample_npz, method="patch", samples=1, alpha=0.5, time_limit=1.0)
    assert result.report["params"]["weight_bound"] == 0.5 and "alpha" not in result.report["params"]


def test_k_with_a_neurons_file_takes_that_many(cli, dense_onnx, sample_npz, tmp_path):
    ranking = tmp_path / "rank.json"
    assert cli("localize", dense_onnx, "--data", sample_npz, "-k", "10", "--json", ranking, "-q").exit_code == 0
    r = cli("synthesize", dense_onnx, "--data", sample_npz, "--method", "deepfault", "--neurons", ranking, "-k", "5",
            "--samples", "1", "--out", tmp_path / "run", "-q")
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    listed = json.loads(ranking.read_text())["neurons"]
    assert report["params"]["k"] == 5 and [n["index"] for n in report["neurons"]] == [n["index"] for n in listed[:5]]
    r = cli("synthesize", dense_onnx, "--data", sample_npz, "--method", "deepfault", "--neurons", ranking, "-k", "11",
            "--out", tmp_path / "run2")
    assert r.exit_code == 1 and "-k 11 is more than the 10 neurons --neurons gives" in r.stderr
    r = cli("synthesize", dense_onnx, "--data", sample_npz, "--method", "deepfault", "--neurons", ranking,
            "--measure", "dstar", "--out", tmp_path / "run3")
    assert r.exit_code == 1 and "--neurons gives the neurons, so --measure would not be used" in r.stderr


def test_neurons_may_be_a_localize_result(dense_onnx, sample_npz):
    ranking = onnxfault.localize(dense_onnx, sample_npz, k=4)
    result = synthesize(dense_onnx, sample_npz, method="deepfault", samples=1, neurons=ranking)
    assert result.report["neurons"] == [n.to_json() for n in ranking.neurons] and result.report["params"]["k"] == 4
    with pytest.raises(OnnxFaultError, match="`neurons` must be") as caught:
        synthesize(dense_onnx, sample_npz, method="deepfault", samples=1, neurons=42)
    assert caught.value.parameter == "neurons"


@pytest.mark.parametrize("function, arguments, parameter", [
    ("localize", {"k": 2.5}, "k"), ("localize", {"k": True}, "k"), ("localize", {"cls": "2"}, "cls"),
    ("localize", {"measure": None}, "measure"), ("synthesize", {"samples": "3"}, "samples"),
    ("synthesize", {"k": True}, "k"), ("synthesize", {"cls": "2"}, "cls"), ("evaluate", {"device": 0}, "device"),
])
def test_wrong_argument_types_are_one_error_naming_the_parameter(dense_onnx, sample_npz, function, arguments,
                                                                 parameter):
    extra = {"method": "deepfault"} if function == "synthesize" else {}
    with pytest.raises(OnnxFaultError, match=f"^`{parameter}` must be") as caught:
        getattr(onnxfault, function)(dense_onnx, sample_npz, **extra, **arguments)
    assert caught.value.parameter == parameter


def test_localize_and_synthesize_both_take_measure(dense_onnx, sample_npz):
    a = onnxfault.localize(dense_onnx, sample_npz, measure="dstar", k=3)
    b = synthesize(dense_onnx, sample_npz, method="deepfault", measure="dstar", k=3, samples=1)
    assert b.report["params"]["measure"] == "dstar" and b.report["neurons"] == [n.to_json() for n in a.neurons]
    with pytest.warns(DeprecationWarning, match="measure_name= is deprecated"):
        old = synthesize(dense_onnx, sample_npz, method="deepfault", measure_name="dstar", k=3, samples=1)
    assert old.report["neurons"] == b.report["neurons"]


def test_warnings_go_through_the_warnings_module_and_stay_on_the_result(dense_onnx, sample_npz):
    with pytest.warns(OnnxFaultWarning, match=r"`k` 500 is more than the 64 neurons") as caught:
        result = onnxfault.localize(dense_onnx, sample_npz, k=500)
    assert [str(w.message) for w in caught if w.category is OnnxFaultWarning] == result.warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a run with nothing to say says nothing
        onnxfault.localize(dense_onnx, sample_npz, k=5)


def test_the_cli_prints_a_warning_once_with_flags(cli, dense_onnx, sample_npz, tmp_path):
    r = cli("localize", dense_onnx, "--data", sample_npz, "-k", "500", "-q")
    assert r.exit_code == 0
    assert r.stderr.count("warning:") == 1 and "-k 500 is more than the 64 neurons" in r.stderr


# ---- typed results, load ------------------------------------------------------------------------------------
def _same(a, b) -> bool:
    from onnxfault.files import json_safe

    return json.dumps(json_safe(a), sort_keys=True) == json.dumps(json_safe(b), sort_keys=True)


def test_load_round_trips_every_kind(dense_onnx, lenet_onnx, sample_npz, tmp_path):
    localized = onnxfault.localize(dense_onnx, sample_npz, k=5)
    localized.save(tmp_path / "l.json")
    evaluated = onnxfault.evaluate(dense_onnx, sample_npz)
    evaluated.save(tmp_path / "e.json")
    made = synthesize(dense_onnx, sample_npz, method="fgsm", samples=1)
    made.save(tmp_path / "s")
    compared = onnxfault.compare(dense_onnx, dense_onnx, sample_npz, k=3)
    compared.save(tmp_path / "c.json")
    big = onnxfault.localize(lenet_onnx, sample_npz, layers="all", granularity="element", k=5)
    big.save(tmp_path / "big.json")  # above 10,000 neurons: the counts come from the npz beside it
    assert big.summarized
    for original, path in ((localized, "l.json"), (evaluated, "e.json"), (compared, "c.json"), (big, "big.json")):
        loaded = onnxfault.load(tmp_path / path)
        assert type(loaded) is type(original) and _same(loaded.to_json(), original.to_json())
        assert json.loads((tmp_path / path).read_text())["kind"] == original.kind
    back = onnxfault.load(tmp_path / "big.json")
    assert np.array_equal(back.spectrum.counts, big.spectrum.counts) and np.array_equal(back.scores, big.scores)
    back = onnxfault.load(tmp_path / "l.json")
    assert np.array_equal(back.spectrum.counts, localized.spectrum.counts) and back.accuracy == localized.accuracy
    loaded = onnxfault.load(tmp_path / "s")
    assert isinstance(loaded, onnxfault.SynthesisResult) and _same(loaded.report, made.report)
    assert all(np.array_equal(loaded.arrays[k], made.arrays[k]) for k in made.arrays)
    assert (loaded.success_rate, loaded.method, loaded.distance) == (made.success_rate, "fgsm", made.distance)
    assert loaded.report["kind"] == "synthesize" and loaded.report["format_version"] == 1


def test_files_of_the_previous_format_still_open(dense_onnx, sample_npz, tmp_path):
    result = onnxfault.evaluate(dense_onnx, sample_npz)
    old = {k: v for k, v in json.loads(json.dumps(result.to_json(), default=lambda a: a.tolist())).items()
           if k not in ("kind", "format_version")}
    (tmp_path / "old.json").write_text(json.dumps(old))
    assert onnxfault.load(tmp_path / "old.json").accuracy == result.accuracy  # recognised by its keys
    onnxfault.report([tmp_path / "old.json"])
    (tmp_path / "new.json").write_text(json.dumps({**old, "kind": "evaluate", "format_version": 99}))
    with pytest.raises(OnnxFaultError, match="format_version 99, newer than this onnxfault reads"):
        onnxfault.load(tmp_path / "new.json")
    for kind in ([], {"a": 1}):  # any JSON value may stand there: one error, never a TypeError
        (tmp_path / "odd.json").write_text(json.dumps({**old, "kind": kind}))
        with pytest.raises(OnnxFaultError, match="is not a result onnxfault wrote"):
            onnxfault.load(tmp_path / "odd.json")
        with pytest.raises(OnnxFaultError, match="is neither a localize"):
            onnxfault.report([tmp_path / "odd.json"])
    (tmp_path / "odd.json").write_text(json.dumps({**old, "kind": "evaluate", "format_version": "1"}))
    with pytest.raises(OnnxFaultError, match="format_version '1', which is no format version"):
        onnxfault.load(tmp_path / "odd.json")
    (tmp_path / "odd.json").write_text(json.dumps({**old, "kind": "poem"}))
    with pytest.raises(OnnxFaultError, match="is not a result onnxfault wrote \\(kind 'poem'\\)"):
        onnxfault.load(tmp_path / "odd.json")


def test_compare_result_plots_and_reports(cli, dense_onnx, sample_npz, tmp_path):
    compared = onnxfault.compare(dense_onnx, dense_onnx, sample_npz, k=3)
    from matplotlib.figure import Figure

    assert isinstance(compared.plot(), Figure)
    page = str(onnxfault.report([compared]))
    assert "Model comparison" in page and "Spectra per paired layer" in page
    r = cli("compare", dense_onnx, dense_onnx, "--data", sample_npz, "-k", "3", "--json", tmp_path / "c.json", "-q")
    assert r.exit_code == 0, r.output
    assert "predictions agree 100.00 %" in r.stdout
    r = cli("report", tmp_path / "c.json", "-o", tmp_path / "page.html")
    assert r.exit_code == 0 and "Model comparison" in (tmp_path / "page.html").read_text()


def test_the_package_lists_its_names_and_version(cli):
    assert {"load", "localize", "synthesize", "LocalizeResult", "OnnxFaultWarning", "register_method"} <= \
        set(dir(onnxfault))
    r = cli("--version")
    assert r.exit_code == 0 and r.stdout.strip() == f"onnxfault {onnxfault.__version__}"
    for cls in (onnxfault.LocalizeResult, onnxfault.EvaluateResult, onnxfault.SynthesisResult,
                onnxfault.CompareResult):
        assert cls.__doc__ and "from_json" in cls.__doc__


def test_the_report_imports_no_synthesis_output():
    """The report ⇄ synthesis circle is gone: the report lays inputs out itself (report.images)."""
    import subprocess
    import sys

    code = ("import sys, onnxfault.report, onnxfault.report.sections; "
            "print('onnxfault.synthesis.output' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "False"


def test_compare_checks_its_arguments(dense_onnx, sample_npz):
    with pytest.raises(OnnxFaultError, match="^`k` must be a whole number") as caught:
        onnxfault.compare(dense_onnx, dense_onnx, sample_npz, k=1.5)
    assert caught.value.parameter == "k"
    with pytest.raises(OnnxFaultError, match="^`measures` must be a list of measure names"):
        onnxfault.compare(dense_onnx, dense_onnx, sample_npz, measures="ochiai")


def test_one_op_table_gives_every_op_set():
    from onnxfault import graph, layers, ops
    from onnxfault.synthesis import chain

    assert layers.ACTIVATIONS == ops.having("activation") and chain.PIECEWISE_LINEAR == ops.having("piecewise_linear")
    assert graph.RESHAPING == ops.having("reshaping") and layers._MONOTONIC == ops.having("monotonic")
    assert ops.having("nonnegative") <= ops.having("monotonic") <= ops.having("activation")
    assert ops.traits_of("Relu") >= {"activation", "monotonic", "nonnegative", "piecewise_linear"}
    with pytest.raises(KeyError, match="unknown op trait 'activaton'"):
        ops.having("activaton")


def test_graph_view_reads_producers_consumers_constants_and_ancestors(dense_onnx):
    import onnx

    from onnxfault.graph_view import graph_view

    proto = onnx.load(str(dense_onnx))
    view = graph_view(proto)
    by_output = {o: n for n in proto.graph.node for o in n.output}
    for name, node in by_output.items():
        assert view.producer(name).op == node.op_type and view.producer(name).name == node.name
    first = proto.graph.initializer[0]
    assert np.array_equal(view.constant(first.name), onnx.numpy_helper.to_array(first))
    assert view.producer(proto.graph.input[0].name) is None
    assert [n.op for n in view.consumers(proto.graph.input[0].name)] == \
        [n.op_type for n in proto.graph.node if proto.graph.input[0].name in n.input]
    out = proto.graph.output[0].name
    assert proto.graph.input[0].name in view.ancestors(out) and out in view.ancestors(out)


def test_notes_name_parameters_in_python_and_flags_on_the_cli(cli, dense_onnx, sample_npz, tmp_path):
    with pytest.warns(OnnxFaultWarning, match=r"hs: no `cut` given; cut at relu1.*\(choose with `cut`\)"):
        synthesize(dense_onnx, sample_npz, method="hs", samples=1)
    r = cli("synthesize", dense_onnx, "--data", sample_npz, "--method", "hs", "--samples", "1", "--out", tmp_path / "r",
            "-q")
    assert r.exit_code == 0 and "warning: hs: no --cut given; cut at relu1" in r.stderr and "`" not in r.stderr


@pytest.mark.parametrize("flags, message", [
    (["--pairs", "relu1"], "--pairs 'relu1' is not A=B pairs of tensor names"),
    (["--measures", "shapley"], "shapley"),
    (["-k", "0"], "-k must be at least 1 (got 0)"),
    (["--layers", "nope"], "unknown tensor 'nope'"),
])
def test_compare_bad_input_is_one_error_line(cli, dense_onnx, sample_npz, tmp_path, flags, message):
    r = cli("compare", dense_onnx, dense_onnx, "--data", sample_npz, *flags, "--json", tmp_path / "c.json")
    lines = r.stderr.strip().splitlines()
    assert r.exit_code == 1 and len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], r.output
    assert not (tmp_path / "c.json").exists() and "Traceback" not in r.output


def test_compare_never_writes_over_what_it_reads(cli, dense_onnx, sample_npz, tmp_path):
    import shutil

    model = tmp_path / "m.onnx"
    shutil.copy(dense_onnx, model)
    before = model.read_bytes()
    r = cli("compare", model, dense_onnx, "--data", sample_npz, "--json", model)
    assert r.exit_code == 1 and "which this run reads" in r.stderr and model.read_bytes() == before
