"""Results to look at and to keep: ``_repr_html_``, ``__rich__``, ``plot()``, ``save()`` and ``onnxfault.report``.

Real results on the shipped LeNet and MNIST sample. The HTML is parsed back and its numbers checked against
the result's JSON; saved results go through the report and must give the page the results in memory give;
``save()`` is checked against what the CLI writes for the same run.
"""
from __future__ import annotations

import base64
import io
import json
from collections import Counter
from dataclasses import replace
from html.parser import HTMLParser

import numpy as np
import pytest
from matplotlib.figure import Figure
from rich.console import Console

import onnxfault
from onnxfault import OnnxFaultError, evaluate, localize, synthesize
from onnxfault.evaluation import EvaluateResult
from onnxfault.files import json_safe
from onnxfault.report import figures, read_run
from onnxfault.report.html import FRAGMENT_CLASS
from onnxfault.report.runs import confusion_of

from conftest import EXAMPLES, run_cli

LENET, SAMPLE = EXAMPLES / "mnist_lenet.onnx", EXAMPLES / "mnist_sample.npz"
PNG = b"\x89PNG\r\n\x1a\n"


class Html(HTMLParser):
    """Tables (id → rows of cells with their text and attributes), images, scripts and style rules of markup."""

    def __init__(self, markup: str):
        super().__init__()
        self.tables: dict[str, list[list[dict]]] = {}
        self.images: dict[str, bytes] = {}  # figure id → PNG bytes
        self.scripts, self.styles, self.roots = 0, [], []
        self._table = self._cell = self._figure = None
        self._depth, self._in_style = 0, False
        self.feed(markup)
        self.close()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if self._depth == 0:
            self.roots.append((tag, a))
        if tag not in ("img", "meta", "br"):
            self._depth += 1
        if tag == "script":
            self.scripts += 1
        elif tag == "style":
            self._in_style = True
        elif tag == "table":
            self._table = self.tables.setdefault(a.get("id"), [])
        elif tag == "tr" and self._table is not None:
            self._table.append([])
        elif tag in ("td", "th") and self._table is not None:
            self._cell = {"text": "", **a}
            self._table[-1].append(self._cell)
        elif tag == "figure":
            self._figure = a.get("id")
        elif tag == "img":
            head, data = a["src"].split(",", 1)
            assert head == "data:image/png;base64"
            self.images[self._figure] = base64.b64decode(data)

    def handle_endtag(self, tag):
        if tag not in ("img", "meta", "br"):
            self._depth -= 1
        if tag == "table":
            self._table = None
        elif tag in ("td", "th"):
            self._cell = None
        elif tag == "style":
            self._in_style = False

    def handle_data(self, data):
        if self._in_style:
            self.styles.append(data)
        elif self._cell is not None:
            self._cell["text"] += data

    def body(self, table: str) -> list[list[dict]]:
        return self.tables[table][1:]  # the first row holds the column headers


@pytest.fixture(scope="module")
def results():
    return {"localize": localize(LENET, SAMPLE, k=8),
            "evaluate": evaluate(LENET, SAMPLE),
            "synthesize": synthesize(LENET, SAMPLE, method="deepfault", samples=1, k=5)}


def _text(renderable, width: int = 140) -> str:
    console = Console(file=io.StringIO(), width=width, record=True, color_system=None)
    console.print(renderable)
    return console.export_text()


# ---- _repr_html_ ------------------------------------------------------------------------------------
def test_localize_html_holds_the_top_k_as_the_json(results):
    result = results["localize"]
    markup = result._repr_html_()
    page = Html(markup)
    neurons = json.loads(json.dumps(json_safe(result.to_json())))["neurons"]
    rows = page.body("topk-R1")
    assert len(rows) == len(neurons) == 8
    for row, n in zip(rows, neurons):
        tensor, index, score = row[1], row[2], row[3]
        assert tensor["text"] == n["tensor"]
        assert index["data-key"] == "index" and int(index["data-value"]) == n["index"]
        assert score["data-key"] == "score" and float(score["data-value"]) == n["score"]
        assert [int(row[i]["data-value"]) for i in range(4, 8)] == [n[c] for c in ("as", "af", "ns", "nf")]


def test_html_is_one_self_contained_element(results):
    for kind, result in results.items():
        markup = result._repr_html_()
        page = Html(markup)
        assert page.roots == [("div", {"class": FRAGMENT_CLASS})], kind  # one element, nothing around it
        assert page.scripts == 0 and "http://" not in markup and "https://" not in markup
        assert page.images and all(png.startswith(PNG) for png in page.images.values())
        rules = [rule.strip() for style in page.styles for rule in style.split("}") if rule.strip()]
        # every style rule is scoped to the fragment, so a notebook's own page keeps its look
        assert rules and all(all(s.strip().startswith(f".{FRAGMENT_CLASS}") for s in rule.split("{")[0].split(","))
                             for rule in rules), kind


def test_evaluate_html_holds_the_per_class_counts(results):
    result = results["evaluate"]
    page = Html(result._repr_html_())
    rows = page.body("per-class-R1")
    expected = [(c, int(row.sum()), int(row[c])) for c, row in enumerate(result.confusion)]
    assert [tuple(int(row[i]["data-value"]) for i in range(3)) for row in rows] == expected
    assert set(page.images) == {"confusion-R1"}


def test_synthesis_html_holds_the_metrics_and_neurons(results):
    result = results["synthesize"]
    page = Html(result._repr_html_())
    metrics = {row[1]["data-key"]: float(row[1]["data-value"]) for row in page.body("metrics-R1")
               if "data-value" in row[1]}
    assert metrics["success_rate"] == result.report["success_rate"]
    assert metrics["distance.linf.mean"] == result.report["distance"]["linf"]["mean"]
    neurons = [(row[1]["text"], int(row[2]["data-value"])) for row in page.body("neurons-R1")]
    assert neurons == [(n["tensor"], n["index"]) for n in result.report["neurons"]]
    assert set(page.images) == {"samples-R1"}


# ---- plot -------------------------------------------------------------------------------------------
def test_plot_is_the_figure_the_html_shows(results):
    shown = {"localize": "distribution", "evaluate": "confusion-R1", "synthesize": "samples-R1"}
    tight = {"synthesize"}  # the sample grid is cropped to what is drawn, as the page does
    for kind, result in results.items():
        fig = result.plot()
        assert isinstance(fig, Figure)
        assert figures.png(fig, tight=kind in tight) == Html(result._repr_html_()).images[shown[kind]], kind


def test_localize_plot_counts_the_top_k_per_layer(results):
    result = results["localize"]
    ax = result.plot().axes[0]
    assert ax.get_ylabel() == "suspicious neurons"
    layers = [label.get_text() for label in ax.get_xticklabels()]
    assert layers == [layer.tensor for layer in result.layers]
    counts = Counter(n.tensor for n in result.neurons)
    assert [int(bar.get_height()) for bar in ax.patches] == [counts[name] for name in layers]


def test_evaluate_plot_draws_each_true_class_share(results):
    result = results["evaluate"]
    matrix, colourbar = result.plot().axes
    assert (matrix.get_xlabel(), matrix.get_ylabel()) == ("predicted class", "true class")
    expected = result.confusion / result.confusion.sum(axis=1, keepdims=True)
    np.testing.assert_array_equal(np.asarray(matrix.images[0].get_array()), expected)
    written = {(int(t.get_position()[1]), int(t.get_position()[0])): int(t.get_text()) for t in matrix.texts}
    assert written == {(int(i), int(j)): int(result.confusion[i, j]) for i, j in zip(*np.nonzero(result.confusion))}


def test_synthesis_plot_is_the_sample_grid(results):
    result = results["synthesize"]
    (ax,) = result.plot().axes
    labels = {t.get_text() for t in ax.texts}
    assert {"original", "synthesized", "change ×10"} <= labels
    a = result.arrays
    assert {f"y={y} p={p}" for y, p in zip(a["labels"], a["predictions_before"])} <= labels


# ---- rich and repr ----------------------------------------------------------------------------------
def test_rich_table_renders_the_top_k(results):
    result = results["localize"]
    lines = _text(result).splitlines()
    for n in result.neurons:
        cells = [str(n.rank), n.tensor, str(n.index), f"{n.score:.6g}", str(n.as_), str(n.af), str(n.ns), str(n.nf)]
        assert any(line.replace("│", " ").split() == cells for line in lines), cells
    sp = result.spectrum
    assert lines[0].startswith(f"{sp.samples} samples, {sp.failing} misclassified")


def test_rich_shows_names_as_given_and_the_cli_prints_the_same_table(results, tmp_path):
    result = results["localize"]
    odd = replace(result, neurons=[replace(result.neurons[0], tensor="mod[bold]x[/bold]")])
    assert "mod[bold]x[/bold]" in _text(odd)  # no markup read from a tensor name
    cli = run_cli("localize", LENET, "--data", SAMPLE, "-k", "8")
    assert cli.exit_code == 0, cli.output
    table = [line for line in _text(result, 80).splitlines() if "│" in line]
    assert table and all(line in cli.stdout for line in table)


def test_rich_shows_evaluate_and_synthesis(results):
    text = _text(results["evaluate"])
    e = results["evaluate"]
    assert f"accuracy {100 * e.accuracy:.2f} % ({e.correct}/{e.samples})" in text
    for c, row in enumerate(e.confusion):
        assert any(line.replace("│", " ").split()[:3] == [str(c), str(row.sum()), str(row[c])]
                   for line in text.splitlines())
    r = results["synthesize"].report
    text = _text(results["synthesize"])
    assert f"deepfault: {r['seeds']['count']} seeds" in text and f"{100 * r['success_rate']:.2f} %" in text


def test_repr_is_one_short_line(results):
    for kind, result in results.items():
        text = repr(result)
        assert "\n" not in text and len(text) < 240, text
    assert repr(results["localize"]).startswith("<LocalizeResult ochiai: 2000 samples")
    assert f"({results['evaluate'].correct}/2000)" in repr(results["evaluate"])
    assert repr(results["synthesize"]).startswith("<SynthesisResult deepfault: 10 seeds")


# ---- save and report --------------------------------------------------------------------------------
def _before_footer(page: str) -> str:
    return page.split("<footer>")[0]


def _saved(results, root) -> list:
    """The results saved where their page names match the names of results in memory (the model's)."""
    (root / "loc").mkdir()
    (root / "eval").mkdir()
    results["localize"].save(root / "loc" / "mnist_lenet.json")
    assert results["evaluate"].save(root / "eval" / "mnist_lenet.json") == root / "eval" / "mnist_lenet.json"
    assert results["synthesize"].save(root / "mnist_lenet") == root / "mnist_lenet"
    return [root / "loc" / "mnist_lenet.json", root / "eval" / "mnist_lenet.json", root / "mnist_lenet"]


def test_saved_results_give_the_page_of_the_results_in_memory(results, tmp_path):
    paths = _saved(results, tmp_path)
    memory = onnxfault.report(list(results.values()))
    saved = onnxfault.report(paths, path=tmp_path / "page.html")
    mixed = onnxfault.report([results["localize"], paths[1], results["synthesize"]])
    assert (tmp_path / "page.html").read_text() == str(saved) == saved.html
    images = Html(memory.html).images
    assert len(images) == 5 and Html(saved.html).images == images  # figures byte-identical
    assert _before_footer(saved.html) == _before_footer(memory.html) == _before_footer(mixed.html)
    assert "R1 (in memory); R2 " + str(paths[1]) + "; R3 (in memory)" in mixed.html
    for section in ("model-card", "evaluation", "suspiciousness", "synthesis"):
        assert f'<section id="{section}"' in memory.html
    fragment = Html(memory._repr_html_())
    assert fragment.scripts == 0 and fragment.images == images
    assert "<html" not in memory._repr_html_() and "3 runs" in repr(memory)


def test_save_writes_what_the_cli_writes(results, tmp_path):
    paths = _saved(results, tmp_path)
    common = [LENET, "--data", SAMPLE, "-q"]
    for args in (["localize", *common, "-k", "8", "--json", tmp_path / "cli.json"],
                 ["evaluate", *common, "--json", tmp_path / "cli_eval.json"],
                 ["synthesize", *common, "--method", "deepfault", "--samples", "1", "-k", "5",
                  "--out", tmp_path / "cli"]):
        run = run_cli(*args)
        assert run.exit_code == 0, run.output
    varying = {"command", "created", "seconds", "peak_memory_mb", "method_peak_memory_mb", "cuda_peak_memory_mb",
               "run_id"}

    def read(path):
        data = json.loads(path.read_text())
        return {k: v for k, v in data.items() if k not in varying}

    assert read(paths[0]) == read(tmp_path / "cli.json")
    assert read(tmp_path / "eval" / "mnist_lenet.json") == read(tmp_path / "cli_eval.json")
    assert sorted(p.name for p in paths[2].iterdir()) == sorted(p.name for p in (tmp_path / "cli").iterdir())
    assert read(paths[2] / "report.json") == read(tmp_path / "cli" / "report.json")
    assert (paths[2] / "samples.png").read_bytes() == (tmp_path / "cli" / "samples.png").read_bytes()
    with np.load(paths[2] / "inputs.npz") as mine, np.load(tmp_path / "cli" / "inputs.npz") as cli:
        assert mine.files == cli.files
        for key in (k for k in mine.files if k != "run_id"):  # each saved run has its own id
            assert mine[key].dtype == cli[key].dtype and mine[key].tobytes() == cli[key].tobytes()


def test_synthesis_save_with_report_writes_the_page(results, tmp_path):
    results["synthesize"].save(tmp_path / "run", report=True)
    page = (tmp_path / "run" / "report.html").read_text()
    assert _before_footer(page) == _before_footer(onnxfault.report.build_report([read_run(tmp_path / "run")]))


def test_report_is_the_package_and_the_function():
    assert callable(onnxfault.report) and onnxfault.report.build_report is not None
    assert onnxfault.Report is onnxfault.report.Report


@pytest.mark.parametrize("runs, message", [([42], "runs: int is not a result"), ([], "runs is empty"),
                                           (7, "runs: int is not a list")])
def test_report_refuses_what_is_not_a_result(runs, message):
    with pytest.raises(OnnxFaultError, match=message) as error:
        onnxfault.report(runs)
    assert "\n" not in str(error.value)


# ---- evaluate files ---------------------------------------------------------------------------------
def _many_classes() -> EvaluateResult:
    rng = np.random.default_rng(0)
    confusion = np.diag(rng.integers(1, 20, 150)).astype(np.int64)
    confusion[3, 7] = confusion[140, 2] = 5
    confusion[9, 9] = 0  # a class without samples
    return EvaluateResult("many.onnx", "many.npz", confusion)


def test_evaluate_json_reads_back_dense_and_sparse(results, tmp_path):
    for result, name in ((results["evaluate"], "dense.json"), (_many_classes(), "sparse.json")):
        result.save(tmp_path / name)
        run = read_run(tmp_path / name)
        assert run.kind == "evaluate"
        np.testing.assert_array_equal(confusion_of(run.data), result.confusion)
    page = onnxfault.report(tmp_path / "sparse.json")
    worst = Html(page.html).body("per-class-R1")
    assert len(worst) == 20 and int(worst[0][0]["data-value"]) == 3  # 3 has 5 of its samples wrong
    bars = _many_classes().plot().axes[0]
    assert bars.get_ylabel() == "accuracy" and len(bars.patches) == 150


@pytest.mark.parametrize("change", [{"confusion": [[1, 2], [3]]}, {"confusion": [[1.5, 0], [0, 1]]},
                                    {"correct": 7}, {"confusion_format": "sparse", "confusion": [[0, 12, 1]]}])
def test_a_broken_evaluate_file_is_one_clear_error(results, tmp_path, change):
    data = json.loads(json.dumps(json_safe(results["evaluate"].to_json())))
    data.update(change)
    (tmp_path / "bad.json").write_text(json.dumps(data))
    with pytest.raises(OnnxFaultError, match="is not a result onnxfault wrote") as error:
        read_run(tmp_path / "bad.json")
    assert "\n" not in str(error.value)
