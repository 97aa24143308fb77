"""Big models' outputs: above 10,000 neurons `localize --json` keeps the top-k and per-layer summaries and names
the npz of every score (written beside it), and `report` draws from that npz.

LeNet-5 at element granularity gives the sizes: all its layers hold 14,992 neurons; relu1, pool1, conv2, relu2,
pool2, flatten and fc1 hold exactly 10,000 (the last size that changes nothing), and relu4 adds 84.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from onnxfault.localization import localize
from onnxfault.report import build_report, read_run
from onnxfault.synthesis import read_neurons

from conftest import EXAMPLES, run_cli
from test_report import Page

LENET, SAMPLE = EXAMPLES / "mnist_lenet.onnx", EXAMPLES / "mnist_sample.npz"
TEN_THOUSAND = "relu1,pool1,conv2,relu2,pool2,flatten,fc1"  # 4704 + 1176 + 1600 + 1600 + 400 + 400 + 120
LAYER_KEYS = {"tensor", "op", "shape", "neurons", "channel_axis"}
TOP_KEYS = {"kind", "format_version", "model", "data", "measure", "mode", "class", "target", "samples", "failing", "accuracy", "granularity",
            "threshold", "params", "device", "layers", "neurons", "command", "created", "versions", "platform",
            "model_io"}  # what localize --json held before summaries


def localize_cli(folder: Path, *extra) -> Path:
    result = run_cli("localize", LENET, "--data", SAMPLE, "--granularity", "element", "--json", folder / "big.json",
                     "-q", *extra)
    assert result.exit_code == 0, result.output
    return folder / "big.json"


@pytest.fixture(scope="module")
def big(tmp_path_factory) -> Path:
    """A summarised run (every LeNet layer, element granularity) with its page from --report."""
    return localize_cli(tmp_path_factory.mktemp("big"), "--layers", "all", "--report")


def every_score(path: Path) -> dict[str, np.ndarray]:
    with np.load(path.parent / json.loads(path.read_text())["spectra"], allow_pickle=False) as npz:
        return {key: npz[key] for key in npz.files}


def figures(page: str) -> dict[str, str]:
    """The page's per-layer figures (heatmap rows and channel grids) by their alt text: their PNG data."""
    parsed = Page(page)
    return {image["alt"]: image["src"] for image in parsed.images
            if image["alt"].startswith(("Heatmap of", "Per-channel heatmaps of"))}


def test_big_json_holds_summaries_and_names_the_npz_beside_it(big):
    data = json.loads(big.read_text())
    assert sorted(p.name for p in big.parent.iterdir()) == ["big.html", "big.json", "big.spectra.npz"]
    assert data.keys() == TOP_KEYS | {"spectra"} and data["spectra"] == "big.spectra.npz"
    assert all(layer.keys() == LAYER_KEYS | {"summary"} for layer in data["layers"])
    s = every_score(big)
    assert s["offsets"][-1] == sum(l["neurons"] for l in data["layers"]) == 14992
    assert s["tensors"].tolist() == [l["tensor"] for l in data["layers"]]
    for layer, start, end in zip(data["layers"], s["offsets"][:-1], s["offsets"][1:]):
        scores, summary = s["scores"][start:end], layer["summary"]
        counts, edges = np.histogram(scores, bins=32)
        assert summary == {"count": len(scores), "min": scores.min(), "max": scores.max(),
                           "quartiles": np.quantile(scores, [0.25, 0.5, 0.75]).tolist(),
                           "histogram": {"counts": counts.tolist(), "edges": edges.tolist()}}
        assert sum(summary["histogram"]["counts"]) == summary["count"] == layer["neurons"]
    # the npz scores are Ochiai's on the npz counts: af / sqrt((af + nf)(af + as)), 0 where that is 0
    as_, af, nf = (s[k].astype(np.float64) for k in ("as", "af", "nf"))
    denominator = np.sqrt((af + nf) * (af + as_))
    expected = np.divide(af, denominator, out=np.zeros_like(af), where=denominator > 0)
    assert np.array_equal(s["scores"], expected)
    assert (s["as"] + s["af"] + s["ns"] + s["nf"] == data["samples"]).all()


def test_top_k_is_the_ranking_of_every_score_and_the_python_apis(big):
    data = json.loads(big.read_text())
    s = every_score(big)
    order = np.lexsort((s["index"], -s["layer"], -s["scores"]))[:10]  # ties: deeper layer, then lower index
    assert [(str(s["tensors"][s["layer"][p]]), int(s["index"][p]), float(s["scores"][p]),
             *(int(s[c][p]) for c in ("as", "af", "ns", "nf"))) for p in order] == \
        [(n["tensor"], n["index"], n["score"], n["as"], n["af"], n["ns"], n["nf"]) for n in data["neurons"]]
    result = localize(LENET, SAMPLE, layers="all", granularity="element")
    assert result.summarized and [n.to_json() for n in result.neurons] == data["neurons"]
    neurons, granularity, _ = read_neurons(big)  # what synthesize --neurons reads
    assert [n.to_json() for n in neurons] == data["neurons"] and granularity == "element"


def test_the_page_draws_the_same_figures_as_from_every_score_in_the_json(big, tmp_path):
    data = json.loads(big.read_text())
    s = every_score(big)
    for layer, start, end in zip(data["layers"], s["offsets"][:-1], s["offsets"][1:]):
        layer["scores"] = s["scores"][start:end].tolist()  # the JSON as a small model's would be
        del layer["summary"]
    del data["spectra"]
    (tmp_path / "small.json").write_text(json.dumps(data))
    small = figures(build_report([read_run(tmp_path / "small.json")]))
    assert len(small) == 7  # 6 channel grids (conv layers) and one heatmap of the 5 flat layers
    assert figures(build_report([read_run(big)])) == small
    assert figures((big.parent / "big.html").read_text()) == small  # localize --report, from memory
    # the report needs only tensors, offsets and scores from the npz
    np.savez(tmp_path / "big.spectra.npz", **{k: s[k] for k in ("tensors", "offsets", "scores")})
    shutil.copy(big, tmp_path / "big.json")
    out = tmp_path / "page.html"
    result = run_cli("report", tmp_path / "big.json", "-o", out)
    assert result.exit_code == 0, result.output
    assert figures(out.read_text()) == small


def test_the_pair_moves_together_and_an_npz_elsewhere_is_named_by_its_full_path(big, tmp_path):
    moved = tmp_path / "moved"
    moved.mkdir()
    for name in ("big.json", "big.spectra.npz"):
        shutil.copy(big.parent / name, moved / name)
    assert figures(build_report([read_run(moved / "big.json")])) == figures(build_report([read_run(big)]))
    (tmp_path / "arrays").mkdir()
    path = localize_cli(tmp_path, "--layers", "all", "--spectra", tmp_path / "arrays" / "all.npz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["arrays", "big.json", "moved"]  # no npz beside
    assert json.loads(path.read_text())["spectra"] == str((tmp_path / "arrays" / "all.npz").resolve())
    assert figures(build_report([read_run(path)])) == figures(build_report([read_run(big)]))


@pytest.mark.parametrize("case", ["missing", "channel-npz", "other-measure", "other-layers", "not-npz", "pickled"])
def test_a_missing_or_mismatched_npz_is_one_line_and_writes_nothing(case, big, tmp_path):
    shutil.copy(big, tmp_path / "big.json")
    npz = tmp_path / "big.spectra.npz"
    if case == "channel-npz":  # the same layers at channel granularity: other neuron counts
        assert run_cli("localize", LENET, "--data", SAMPLE, "--layers", "all", "--spectra", npz, "-q").exit_code == 0
    elif case == "other-measure":  # same layers and sizes, other scores
        result = run_cli("localize", LENET, "--data", SAMPLE, "--layers", "all", "--granularity", "element",
                         "--measure", "tarantula", "--spectra", npz, "-q")
        assert result.exit_code == 0
    elif case == "other-layers":
        assert run_cli("localize", LENET, "--data", SAMPLE, "--spectra", npz, "-q").exit_code == 0
    elif case == "not-npz":
        npz.write_text("not a zip")
    elif case == "pickled":
        np.savez(npz, tensors=np.array(["x"], object), offsets=np.array([0, 1]), scores=np.zeros(1))
    out = tmp_path / "page.html"
    result = run_cli("report", tmp_path / "big.json", "-o", out)
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "big.spectra.npz" in lines[0], result.stderr
    expected = {"missing": "which does not exist", "channel-npz": "its layers hold 874 neurons, the JSON's 14992",
                "other-measure": "is not the JSON's", "other-layers": "its layers are not the JSON's",
                "not-npz": "cannot read", "pickled": "cannot read"}[case]
    assert expected in lines[0]
    assert not out.exists() and not list(tmp_path.glob(".page.html*"))


def test_a_spectra_key_that_names_no_file_is_one_line(big, tmp_path):
    (tmp_path / "big.json").write_text(json.dumps(json.loads(big.read_text()) | {"spectra": 5}))
    result = run_cli("report", tmp_path / "big.json", "-o", tmp_path / "page.html")
    assert result.exit_code == 1 and not (tmp_path / "page.html").exists()
    assert result.stderr.strip().splitlines() == [f"error: {tmp_path / 'big.json'} is not a result onnxfault wrote: "
                                                  "'spectra' is not the name of an npz file; write it again with "
                                                  "`onnxfault localize`"]


def test_at_ten_thousand_neurons_nothing_changes_and_above_it_summaries(tmp_path):
    (tmp_path / "at").mkdir()
    (tmp_path / "above").mkdir()
    at = localize_cli(tmp_path / "at", "--layers", TEN_THOUSAND)
    data = json.loads(at.read_text())
    assert [p.name for p in (tmp_path / "at").iterdir()] == ["big.json"]
    assert data.keys() == TOP_KEYS and sum(l["neurons"] for l in data["layers"]) == 10000
    assert all(layer.keys() == LAYER_KEYS | {"scores", "counts"} for layer in data["layers"])
    above = localize_cli(tmp_path / "above", "--layers", TEN_THOUSAND + ",relu4")
    data = json.loads(above.read_text())
    assert sorted(p.name for p in (tmp_path / "above").iterdir()) == ["big.json", "big.spectra.npz"]
    assert data["spectra"] == "big.spectra.npz" and sum(l["neurons"] for l in data["layers"]) == 10084
    assert all("scores" not in layer for layer in data["layers"])


def test_python_api_save_writes_the_pair_and_to_json_alone_names_none(tmp_path):
    result = localize(LENET, SAMPLE, layers="all", granularity="element")
    written = result.save(tmp_path / "api.json")
    assert [p.name for p in written] == ["api.json", "api.spectra.npz"]
    assert read_run(tmp_path / "api.json").arrays["scores"].tolist() == result.scores.tolist()
    data = result.to_json()
    assert data["spectra"] is None and all("summary" in layer for layer in data["layers"])
    (tmp_path / "alone.json").write_text(json.dumps(json.loads((tmp_path / "api.json").read_text()) | {"spectra": None}))
    page = build_report([read_run(tmp_path / "alone.json")])
    assert "names no npz holding every score" in page and not figures(page)


def test_an_unwritable_npz_beside_leaves_no_json(tmp_path):
    (tmp_path / "big.spectra.npz").mkdir()  # a folder where the npz would go
    result = run_cli("localize", LENET, "--data", SAMPLE, "--layers", "all", "--granularity", "element",
                     "--json", tmp_path / "big.json", "-q")
    assert result.exit_code == 1 and result.stderr.startswith("error: ") and "big.spectra.npz" in result.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["big.spectra.npz"]
