"""`onnxfault report`: a page rendered from real runs on the shipped examples, checked against their JSON.

The page is parsed back: its sections, that every figure is a decodable PNG inlined as a data URI, and that
every number a table shows carries the exact value of the run's JSON (``data-key`` / ``data-value``).
"""
from __future__ import annotations

import base64
import io
import json
import shlex
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from onnxfault.report import build_report, compare, read_run
from onnxfault.report.sections import _position

from conftest import EXAMPLES, run_cli

DENSE, LENET, SAMPLE = (EXAMPLES / n for n in ("mnist_dense.onnx", "mnist_lenet.onnx", "mnist_sample.npz"))


class Page(HTMLParser):
    """What the tests read back from a page: sections, images, table cells with their data attributes."""

    def __init__(self, text: str):
        super().__init__()
        self.sections, self.images, self.scripts, self.links = [], [], 0, []
        self.cells: dict[str, list[dict]] = {}  # table id -> cells with data-key
        self.best: dict[str, list[str]] = {}  # table id -> data-keys of cells marked best, per row
        self.table = None
        self.row = -1
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "section":
            self.sections.append(a["id"])
        elif tag == "img":
            self.images.append(a)
        elif tag == "script":
            self.scripts += 1
        elif tag in ("a", "link"):
            self.links.append(a.get("href", ""))
        elif tag == "table":
            self.table, self.row = a.get("id"), -1
            self.cells.setdefault(self.table, [])
        elif tag == "tr" and self.table:
            self.row += 1
        elif tag in ("td", "th") and self.table and "data-key" in a:
            self.cells[self.table].append({"row": self.row - 1, "key": a["data-key"],
                                           "value": a.get("data-value"), "best": "best" in a.get("class", "")})


def _json(path: Path) -> dict:
    return json.loads((path / "report.json" if path.is_dir() else path).read_text())


def test_sections_and_self_contained(report_runs):
    page = Page(report_runs["html"])
    assert page.sections == ["model-card", "suspiciousness", "synthesis", "trade-offs"]
    assert page.scripts == 0 and all(link.startswith("#") for link in page.links)
    assert "http://" not in report_runs["html"] and "https://" not in report_runs["html"]
    assert "default-src 'none'" in report_runs["html"]  # the page itself forbids any fetch but data: images
    for tag in ("R1", "R2"):
        assert f'id="topk-{tag}"' in report_runs["html"] and f'id="heatmap-{tag}"' in report_runs["html"]
    assert 'id="grid-R2-conv2"' in report_runs["html"]  # element granularity conv layer: a grid per channel
    for tag in ("R3", "R4", "R5"):
        assert f'id="samples-{tag}"' in report_runs["html"] and f'id="metrics-{tag}"' in report_runs["html"]
    assert 'id="compare"' in report_runs["html"] and 'id="tradeoff-k"' in report_runs["html"]


def test_every_image_is_an_inlined_png_with_alt_text(report_runs):
    page = Page(report_runs["html"])
    # distribution; R1 spectrum + heatmap; R2 spectrum + heatmap (relu3) + grid (conv2); 3 sample grids; k trade-off
    assert len(page.images) == 10
    for img in page.images:
        assert img["src"].startswith("data:image/png;base64,") and img["alt"]
        picture = Image.open(io.BytesIO(base64.b64decode(img["src"].split(",", 1)[1])))
        picture.load()
        assert picture.format == "PNG" and picture.width > 100 and picture.height > 50


def test_model_card_records_commands_and_versions(report_runs):
    html = report_runs["html"]
    for args in report_runs["commands"].values():
        line = shlex.join(["onnxfault", *map(str, args)])
        assert line.replace("&", "&amp;").replace("'", "&#x27;") in html
    data = _json(report_runs["paths"][0])
    assert data["model_io"] == {"input": {"name": "input", "shape": ["N", 1, 28, 28]},
                                "output": {"name": "logits", "classes": 10}, "opset": 17}
    assert data["versions"]["onnxfault"] in html and data["versions"]["onnxruntime"] in html


def test_top_k_numbers_equal_the_json(report_runs):
    page = Page(report_runs["html"])
    for tag, path in (("R1", report_runs["paths"][0]), ("R2", report_runs["paths"][1])):
        neurons = _json(path)["neurons"]
        cells = page.cells[f"topk-{tag}"]
        assert len(cells) == len(neurons) * 7  # rank, index, score, as, af, ns, nf
        for cell in cells:
            assert repr(neurons[cell["row"]][cell["key"]]) == cell["value"], cell


def test_metrics_numbers_equal_the_json(report_runs):
    page = Page(report_runs["html"])
    for tag, path in zip(("R3", "R4", "R5"), report_runs["paths"][2:]):
        report = _json(path)
        cells = page.cells[f"metrics-{tag}"]
        assert {c["key"] for c in cells} >= {"accuracy_after", "success_rate", "distance.linf.mean", "seconds"}
        for cell in cells:
            assert repr(compare.lookup(report, tuple(cell["key"].split(".")))) == cell["value"], cell


def test_comparison_marks_the_best_value_of_each_metric(report_runs):
    page = Page(report_runs["html"])
    reports = [_json(p) for p in report_runs["paths"][2:]]
    cells = page.cells["compare"]
    marked = 0
    for path, _, better, _ in compare.METRICS:
        key = ".".join(path)
        values = [compare.lookup(r, path) for r in reports]
        column = [c for c in cells if c["key"] == key]
        if all(v is None for v in values):
            assert not column
            continue
        assert [c["value"] for c in column] == [None if v is None else repr(v) for v in values]
        present = [v for v in values if v is not None]
        best = max(present) if better == "max" else min(present)
        ties = [v is not None and abs(v - best) <= 1e-6 * abs(best) for v in values]
        if sum(ties) < len(present):
            assert [c["best"] for c in column] == ties, key
            marked += 1
        else:  # every value ties (float noise included): nothing is marked
            assert not any(c["best"] for c in column)
    assert marked >= 5  # seconds, distances, … differ between deepfault and fgsm


def test_trade_off_table_follows_k(report_runs):
    page = Page(report_runs["html"])
    k5, k10 = _json(report_runs["paths"][2]), _json(report_runs["paths"][3])
    seconds = [c["value"] for c in page.cells["tradeoff-table-k"] if c["key"] == "seconds"]
    assert seconds == [repr(k5["seconds"]), repr(k10["seconds"])]


def _before_footer(page: str) -> str:
    return page.split("<footer>")[0]


def test_report_flags_write_the_same_page_as_the_report_command(tmp_path):
    """--report pages come from the results in memory; they equal the page built from the files written."""
    result = run_cli("localize", DENSE, "--data", SAMPLE, "--json", tmp_path / "rank.json", "--report", "-q")
    assert result.exit_code == 0, result.output
    page = (tmp_path / "rank.html").read_text()
    assert Page(page).sections == ["model-card", "suspiciousness"]
    assert _before_footer(page) == _before_footer(build_report([read_run(tmp_path / "rank.json")]))
    result = run_cli("synthesize", DENSE, "--data", SAMPLE, "--method", "fgsm", "--samples", "1",
                     "--out", tmp_path / "run", "--report", "-q")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [".onnxfault-run", "inputs.npz", "report.html",
                                                                     "report.json", "samples.png"]
    page = (tmp_path / "run" / "report.html").read_text()
    assert Page(page).sections == ["model-card", "synthesis"]
    assert _before_footer(page) == _before_footer(build_report([read_run(tmp_path / "run")]))


def test_older_runs_without_scores_or_provenance_still_render(report_runs, tmp_path):
    data = _json(report_runs["paths"][0])
    for key in ("model_io", "versions", "command", "created", "platform"):
        data.pop(key)
    for layer in data["layers"]:
        layer.pop("scores")
    (tmp_path / "old.json").write_text(json.dumps(data))
    out = tmp_path / "old.html"
    assert run_cli("report", tmp_path / "old.json", "-o", out).exit_code == 0
    html = out.read_text()
    assert "Per-neuron scores are not in this file" in html and "not recorded" in html


@pytest.mark.parametrize("case", ["missing", "not-a-run", "not-json", "folder-without-report", "bad-npz",
                                  "bad-content", "unwritable"])
def test_bad_input_is_one_line_and_writes_nothing(case, report_runs, tmp_path):
    out = tmp_path / "page.html"
    run = report_runs["paths"][2]
    if case == "missing":
        args = [tmp_path / "nope.json"]
    elif case == "not-a-run":
        (tmp_path / "x.json").write_text('{"hello": 1}')
        args = [tmp_path / "x.json"]
    elif case == "not-json":
        (tmp_path / "x.json").write_text("{")
        args = [tmp_path / "x.json"]
    elif case == "folder-without-report":
        args = [tmp_path]
    elif case == "bad-npz":
        (tmp_path / "r").mkdir()
        (tmp_path / "r" / "report.json").write_text((run / "report.json").read_text())
        (tmp_path / "r" / "inputs.npz").write_bytes(b"not a zip")
        args = [tmp_path / "r"]
    elif case == "bad-content":
        data = _json(report_runs["paths"][0])
        data["neurons"] = [{"rank": 1}]
        (tmp_path / "x.json").write_text(json.dumps(data))
        args = [tmp_path / "x.json"]
    else:
        out = tmp_path / "missing-folder" / "page.html"
        args = [run]
    result = run_cli("report", *args, "-o", out)
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert not out.exists()
    assert not list(tmp_path.glob(".page.html*"))  # no temp file left behind


def test_title_option(report_runs, tmp_path):
    out = tmp_path / "titled.html"
    assert run_cli("report", report_runs["paths"][2], "-o", out, "--title", "k <5> & more").exit_code == 0
    assert "<title>k &lt;5&gt; &amp; more</title>" in out.read_text()


def test_localize_report_needs_json_not_named_html(tmp_path):
    result = run_cli("localize", DENSE, "--data", SAMPLE, "--report")
    assert result.exit_code == 1 and "add --json FILE" in result.stderr
    result = run_cli("localize", DENSE, "--data", SAMPLE, "--report", "--json", tmp_path / "rank.html")
    assert result.exit_code == 1 and "name it .json" in result.stderr and not list(tmp_path.iterdir())


def test_best_flags_and_layer_counts_by_hand():
    assert compare.best_flags([0.5, 0.2, None, 0.2], "min") == [False, True, False, True]
    assert compare.best_flags([0.5, 0.2], "max") == [True, False]
    assert compare.best_flags([0.5, None], "max") == [False, False]  # one value: nothing to compare
    assert compare.best_flags([0.3, 0.3], "max") == [False, False]  # all equal: no winner
    assert compare.best_flags([0.10000002, 0.10000003, 0.2], "min") == [True, True, False]  # float noise ties
    assert compare.best_flags([0.10000002, 0.10000003], "min") == [False, False]
    neurons = [{"tensor": "b"}, {"tensor": "a"}, {"tensor": "b"}, {"tensor": "z"}]
    assert compare.neurons_per_layer(neurons, ["a", "b", "c"]) == [1, 2, 0]
    af, as_ = compare.active_fractions([{"as": 3, "af": 1, "ns": 1, "nf": 3}, {"as": 0, "af": 0, "ns": 0, "nf": 0}])
    assert af.tolist() == [0.25, 0.0] and as_.tolist() == [0.75, 0.0]


def test_trade_off_series_needs_exactly_one_varying_parameter():
    def report(method, seconds, rate, **params):
        base = {"k": 10, "iterations": 1, "measure": "ochiai", "target": None, "seed": 0}
        return {"method": method, "model": "m", "data": "d", "params": {**base, **params}, "seconds": seconds,
                "success_rate": rate, "target_rate": None}

    reports = [("R1", report("hs", 2.0, 0.5, k=20)), ("R2", report("hs", 1.0, 0.3, k=5)),
               ("R3", report("hs", 1.5, 0.4, k=10)), ("R4", report("pgd", 1.0, 0.9, k=5, iterations=5)),
               ("R5", report("pgd", 2.0, 0.9, k=10, iterations=10)),  # two parameters vary: no series
               ("R6", report("deepfault", 1.0, 0.2, measure="tarantula"))]  # alone in its group
    (series,) = compare.trade_off_series(reports)
    assert series.parameter == "k" and series.values == [5, 10, 20] and series.tags == ["R2", "R3", "R1"]
    assert series.seconds == [1.0, 1.5, 2.0] and series.effectiveness == [0.3, 0.4, 0.5]
    targeted = report("hs", 1.0, 0.0, target=3) | {"target_rate": 0.7}
    assert compare.effectiveness(targeted) == (0.7, "target rate")


def test_element_positions_follow_the_layer_shape():
    layer = {"shape": [16, 10, 10]}
    assert _position(layer, 0, "element") == "(0, 0, 0)"
    assert _position(layer, 10 * 10 * 3 + 10 * 4 + 7, "element") == "(3, 4, 7)"
    assert _position(layer, 5, "channel") == "–"


def test_channel_maps_put_top_neurons_where_they_are_for_either_layout():
    chw = np.arange(2 * 3 * 4, dtype=float)  # scores of a (2, 3, 4) layer in flat index order
    maps, marks = compare.channel_maps(chw, [2, 3, 4], 0, [np.ravel_multi_index((1, 2, 3), (2, 3, 4))])
    assert maps.shape == (2, 3, 4) and maps[1, 2, 3] == 23 and marks == {1: [(2, 3)]}
    hwc = np.arange(3 * 4 * 2, dtype=float)  # a channels-last (3, 4, 2) layer
    maps, marks = compare.channel_maps(hwc, [3, 4, 2], 2, [np.ravel_multi_index((2, 1, 1), (3, 4, 2))])
    assert maps.shape == (2, 3, 4) and maps[1, 2, 1] == np.ravel_multi_index((2, 1, 1), (3, 4, 2))
    assert marks == {1: [(2, 1)]}
    peaks = np.zeros((5, 1, 1))
    peaks[:, 0, 0] = [0.1, 0.9, 0.5, 0.7, 0.2]
    assert compare.channels_to_show(peaks, {4: [(0, 0)]}, 3) == [1, 3, 4]  # top-neuron channel first, then peaks


def test_non_numeric_trade_parameters_keep_the_given_order():
    def report(cut, seconds):
        return {"method": "hs", "model": "m", "data": "d", "params": {"cut": cut, "target": None}, "seconds": seconds,
                "success_rate": 0.5, "target_rate": None}

    (series,) = compare.trade_off_series([("R1", report("relu3", 2.0)), ("R2", report("conv1", 1.0)),
                                           ("R3", report("relu1", 1.5))])
    assert series.parameter == "cut" and series.values == ["relu3", "conv1", "relu1"]


def test_sample_grid_draws_colour_and_grey_inputs():
    from onnxfault.report import figures

    rng = np.random.default_rng(0)
    for shape in ((3, 8, 8, 3), (3, 12, 10)):
        x = rng.random(shape)
        captions = [(f"y={i} p={i}", f"p={i + 1}", True) for i in range(3)]
        picture = Image.open(io.BytesIO(figures.sample_grid(x, np.clip(x + 0.05, 0, 1), captions, (0.0, 1.0))))
        assert picture.format == "PNG" and picture.width > 100 and picture.height > 100
