"""``coverage``: NC, KMNC, NBC, SNAC and TKNC against a hand computation on a two-layer net (boundaries, sections,
top-k, each neuron with its own loop), the coverage a synthesized run adds, the CLI, saved results, bad input."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxfault
from onnxfault.coverage import sections_hit, top_members

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
rng = np.random.default_rng(3)
W1, W2, W3 = rng.normal(size=(3, 4)), rng.normal(size=(4, 3)), rng.normal(size=(3, 2))


def two_layer_net(path: Path) -> Path:
    """x (N, 3) → h1 = relu(x W1) (4) → h2 = relu(h1 W2) (3) → scores h2 W3 (2)."""
    inits = [numpy_helper.from_array(w.astype(np.float32), n) for w, n in ((W1, "W1"), (W2, "W2"), (W3, "W3"))]
    nodes = [helper.make_node("MatMul", ["x", "W1"], ["a1"]), helper.make_node("Relu", ["a1"], ["h1"]),
             helper.make_node("MatMul", ["h1", "W2"], ["a2"]), helper.make_node("Relu", ["a2"], ["h2"]),
             helper.make_node("MatMul", ["h2", "W3"], ["scores"])]
    graph = helper.make_graph(nodes, "two", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
                              [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 2])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def hidden(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    f = lambda a: a.astype(np.float32)  # noqa: E731 - the net computes in float32
    h1 = np.maximum(f(x) @ f(W1), 0)
    return h1.astype(np.float64), np.maximum(h1 @ f(W2), 0).astype(np.float64)


def by_hand(data: np.ndarray, reference: np.ndarray, t: float, k_sections: int, k_top: int) -> dict:
    """Every criterion, neuron by neuron and input by input, from the definitions (Ma et al. 2018, §3)."""
    layers, ref_layers = hidden(data), hidden(reference)
    nc = tk = kmnc = upper = lower = n = 0
    for values, ref in zip(layers, ref_layers):
        in_top = set()
        for row in values:
            order = sorted(range(len(row)), key=lambda j: (-row[j], j))
            in_top.update(order[:k_top])
        for j in range(values.shape[1]):
            n += 1
            low, high = ref[:, j].min(), ref[:, j].max()
            nc += any(v > t for v in values[:, j])
            tk += j in in_top
            upper += any(v > high for v in values[:, j])
            lower += any(v < low for v in values[:, j])
            hit = set()
            for v in values[:, j]:
                if low <= v <= high:
                    hit.add(0 if high == low else min(int((v - low) / (high - low) * k_sections), k_sections - 1))
            kmnc += len(hit)
    return {"nc": (nc, n), "tknc": (tk, n), "kmnc": (kmnc, n * k_sections), "nbc": (upper + lower, 2 * n),
            "snac": (upper, n)}


@pytest.mark.parametrize("t, k_sections, k_top", [(0.0, 10, 1), (0.5, 4, 2), (-1.0, 1000, 3)])
def test_every_criterion_matches_the_hand_computation(tmp_path, t, k_sections, k_top):
    model = two_layer_net(tmp_path / "two.onnx")
    reference = rng.normal(size=(50, 3))
    data = np.concatenate([rng.normal(scale=1.5, size=(40, 3)), reference[:5]])  # some on the boundaries exactly
    labels = np.zeros(len(data), np.int64)
    result = onnxfault.coverage(model, (data.astype(np.float32), labels), layers=["h1", "h2"], threshold=t,
                                reference=(reference.astype(np.float32), np.zeros(50, np.int64)),
                                sections=k_sections, top=k_top, granularity="element")
    assert result.scores == by_hand(data, reference, t, k_sections, k_top)
    assert [layer["neurons"] for layer in result.layers] == [4, 3] and result.samples == 45
    assert result.ratio("nc") == result.scores["nc"][0] / 7


def test_the_pieces_on_numbers_chosen_by_hand():
    values = np.array([[0.0, 1.0, 5.0], [2.0, 1.0, -1.0], [4.0, 1.0, 3.0]])
    low, high = np.array([0.0, 1.0, 0.0]), np.array([4.0, 1.0, 4.0])
    hit = sections_hit(values, low, high, 4)
    # neuron 0: 0 → section 0, 2 → 2, 4 (= high) → the last; neuron 1: a one-point range is its first section;
    # neuron 2: 5 and -1 are outside, 3 → section 3
    assert hit.tolist() == [[True, False, True, True], [True, False, False, False], [False, False, False, True]]
    assert top_members(values, [2, 1], 1).tolist() == [2, 1, 3]  # ties go to the lower index: row 0 picks neuron 1


def test_inputs_add_what_they_cover(tmp_path, cli):
    run = tmp_path / "run"
    assert cli("synthesize", EXAMPLES / "mnist_dense.onnx", "--data", EXAMPLES / "mnist_sample.npz", "--method",
               "fgsm", "--samples", "20", "--out", run, "-q").exit_code == 0
    data = np.load(EXAMPLES / "mnist_sample.npz")
    x, y = data["x"][:100], data["y"][:100]
    result = onnxfault.coverage(EXAMPLES / "mnist_dense.onnx", (x, y), inputs=run, reference=(data["x"], data["y"]),
                                sections=50)
    with np.load(run / "inputs.npz") as arrays:
        together = (np.concatenate([x.astype(np.float32)[:, None] / 255, arrays["synthesized"]]),
                    np.concatenate([y, arrays["labels"]]))
        made = len(arrays["synthesized"])
    direct = onnxfault.coverage(EXAMPLES / "mnist_dense.onnx", together, reference=(data["x"], data["y"]), sections=50)
    assert result.with_inputs == direct.scores and result.input_samples == made > 0
    assert all(result.added(c) >= 0 for c in result.scores) and result.added("kmnc") > 0
    figure = result.plot()  # a bar group per layer, the whole net, and the whole net with the inputs
    assert len(figure.axes[0].patches) == 5 * (len(result.layers) + 2)
    assert "with the inputs" in result._repr_html_()


def test_the_cli_prints_saves_and_loads_back(tmp_path, cli):
    out = tmp_path / "cov.json"
    done = cli("coverage", EXAMPLES / "mnist_lenet.onnx", "--data", EXAMPLES / "mnist_sample.npz", "--limit", "300",
               "--reference", EXAMPLES / "mnist_sample.npz", "--sections", "20", "--top", "2", "--json", out)
    assert done.exit_code == 0, done.output
    saved = json.loads(out.read_text())
    assert saved["kind"] == "coverage" and saved["format_version"] == 1 and saved["samples"] == 300
    assert saved["params"]["criteria"] == ["nc", "kmnc", "nbc", "snac", "tknc"]
    again = onnxfault.load(out)
    assert again.to_json() == saved and f"({saved['coverage']['kmnc'][0]}/{saved['coverage']['kmnc'][1]})" in done.output
    assert sum(layer["coverage"]["nc"][0] for layer in saved["layers"]) == saved["coverage"]["nc"][0]
    page = tmp_path / "page.html"
    assert cli("report", out, "-o", page).exit_code == 0
    html = page.read_text()
    assert 'id="coverage"' in html and "Coverage per criterion of R1" in html
    kmnc = saved["coverage"]["kmnc"]
    assert f"{kmnc[0]:,} / {kmnc[1]:,}" in html
    assert onnxfault.report([again]).html.count('id="coverage-R1"') == 1


@pytest.mark.parametrize("args, message", [
    (["--criteria", "nc,bogus"], "error: unknown coverage criterion 'bogus'; use nc, kmnc, nbc, snac, tknc"),
    (["--criteria", "snac"], "error: snac measures against neuron boundaries; give --reference"),
    (["--reference", "small.npz"], "error: the reference data: "),
    (["--sections", "0"], "--sections"),
])
def test_bad_coverage_input_is_one_line_and_writes_nothing(tmp_path, cli, args, message):
    np.savez(tmp_path / "small.npz", x=np.zeros((3, 5, 5), np.uint8), y=np.zeros(3, np.int64))
    os.chdir(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    done = cli("coverage", EXAMPLES / "mnist_dense.onnx", "--data", EXAMPLES / "mnist_sample.npz", *args, "--json",
               "c.json")
    lines = done.stderr.strip().splitlines()
    assert done.exit_code != 0 and len(lines) == 1 and message in lines[0] and "Traceback" not in done.output
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_coverage_over_ray_equals_one_process(tmp_path):
    pytest.importorskip("ray")
    from onnxfault.data import DataOptions
    from onnxfault.distributed import RayOptions

    options = DataOptions(batch_size=100)
    here = onnxfault.coverage(EXAMPLES / "mnist_lenet.onnx", EXAMPLES / "mnist_sample.npz",
                              reference=EXAMPLES / "mnist_sample.npz", sections=100, top=2, data_options=options)
    spread = onnxfault.coverage(EXAMPLES / "mnist_lenet.onnx", EXAMPLES / "mnist_sample.npz",
                                reference=EXAMPLES / "mnist_sample.npz", sections=100, top=2, data_options=options,
                                ray=RayOptions("local", 2))
    assert spread.scores == here.scores and spread.layers == here.layers
