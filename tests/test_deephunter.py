"""DeepHunter: one fuzzing iteration against a hand computation on a two-layer net (the queue's pick, the
mutation, the prediction, the coverage sections that queue a mutant), its transformations, Eq. 1 and 2, the
sections and the boundaries by hand, and a run from the CLI with the standard report and inputs.npz."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import onnxfault
from onnxfault.data import as_dataset
from onnxfault.model import as_model
from onnxfault.synthesis.deephunter import (PIXEL, Boundaries, Item, mutate, pick, section_count, sections_reached,
                                            selection_probability, transform)
from onnxfault.synthesis.methods import METHODS

from test_dlfuzz import B1, W1, W2, two_layer_net

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
LOCAL = ("contrast", "brightness", "noise", "pixel_change")  # a flat input's transformations, in draw order


def _hidden(x: np.ndarray) -> np.ndarray:
    return np.maximum(x.astype(np.float64) @ W1 + B1, 0)


def _first_draw(seed: int) -> tuple[str, float]:
    """The transformation and parameter the first mutant of seed 0 draws, by hand: the queue's pick draws
    uniforms until one is below 0.8 (an input never picked), then the name, then the parameter."""
    rng = np.random.default_rng([seed, 0])
    while not rng.random() < 0.8:
        pass
    name = LOCAL[int(rng.integers(len(LOCAL)))]
    return name, PIXEL[name][int(rng.integers(len(PIXEL[name])))]


@pytest.mark.parametrize("criterion", ["snac", "nbc"])
@pytest.mark.parametrize("direction", [1, -1])
def test_one_iteration_is_the_fuzzing_rule_by_hand(tmp_path, criterion, direction):
    model = two_layer_net(tmp_path / "two.onnx")
    x = np.array([[0.6, 0.3, 0.5]], np.float32)
    label = int((_hidden(x) @ W2).argmax())
    seed = next(s for s in range(200) if _first_draw(s)[0] == "brightness" and
                np.sign(_first_draw(s)[1]) == direction)
    shift = _first_draw(seed)[1]
    mutant = np.clip(x.astype(np.float64) + shift / 255, 0, 1).astype(np.float32)  # |shift| ≤ 20/255 < β: kept
    high = low = _hidden(x)[0]  # the boundaries: the data is the seed alone, each range one point (width 0.05)
    h = _hidden(mutant)[0]
    error = int((h @ W2).argmax()) != label
    above = np.flatnonzero(h > high)
    below = np.flatnonzero(h < low) if criterion == "nbc" else np.array([], int)
    sections = {int(n) * 11 + min(int((h[n] - high[n]) / 0.05), 10) for n in above}
    sections |= {44 + int(n) * 11 + min(int((low[n] - h[n]) / 0.05), 10) for n in below}
    queued = not error and bool(sections)

    result = onnxfault.synthesize(model, (x, np.array([label])), method="deephunter", samples=1, seed=seed,
                                  iterations=1, mutants=1, criterion=criterion, clip_min=0.0, clip_max=1.0)
    report = result.to_json()
    want = mutant if error or queued else x
    assert result.arrays["synthesized"].tobytes() == want.tobytes()
    assert (report["mutations"], report["test_errors"], report["queued"]) == (1, int(error), int(queued))
    assert report["coverage_after"] == pytest.approx(len(sections) / (88 if criterion == "nbc" else 44))
    assert report["boundary_samples"] == 1
    if criterion == "snac" and direction < 0:
        assert not sections  # every neuron falls: below its lower boundary, which SNAC does not count
    if criterion == "nbc" and direction < 0:
        assert below.size and not error and queued  # NBC's lower sections queue the same mutant


def test_transformations_by_hand():
    rng = np.random.default_rng(0)
    image = np.zeros((6, 6), np.float32)
    image[2, 1] = 1.0  # row 2, column 1
    moved = transform(image, "translation", 2, (0, 1), 0.0, 1.0, rng)
    assert np.argwhere(moved > 0.5).tolist() == [[4, 3]] and moved.max() == pytest.approx(1.0)
    # OpenCV's 90° rotation about (3, 3): (x, y) → (y + cx − cy, −x + cx + cy) = (2, 5)
    turned = transform(image, "rotation", 90, (0, 1), 0.0, 1.0, rng)
    assert np.argwhere(turned > 0.5).tolist() == [[5, 2]] and turned.max() == pytest.approx(1.0, abs=1e-6)
    assert transform(image, "scale", 1.0, (0, 1), 0.0, 1.0, rng).tobytes() == image.tobytes()
    sheared = transform(image, "shear", -1.0, (0, 1), 0.0, 1.0, rng)  # x' = x + y: column 1 + 2
    assert np.argwhere(sheared > 0.5).tolist() == [[2, 3]]
    values = np.array([0.2, 0.5, 0.9], np.float32)
    assert np.allclose(transform(values, "contrast", 1.2, None, 0.1, 1.0, rng), [0.22, 0.58, 1.0])
    assert np.allclose(transform(values, "brightness", -20, None, 0.0, 1.0, rng), values - 20 / 255)
    box = transform(np.eye(5, dtype=np.float32), "blur", 1, (0, 1), 0.0, 1.0, rng)  # 3×3 box
    # OpenCV's border (row and column −1 mirror 1): (0, 0) sees (1, 1) four times and itself; (0, 2) sees (1, 1) twice
    assert box[2, 2] == pytest.approx(3 / 9) and box[0, 0] == pytest.approx(5 / 9) and box[0, 2] == pytest.approx(2 / 9)


def test_eq1_and_eq2_by_hand():
    x = np.full(10, 0.5, np.float32)
    for seed in range(20):
        rng, again = np.random.default_rng(seed), np.random.default_rng(seed)
        again.integers(1)
        shift = PIXEL["brightness"][int(again.integers(len(PIXEL["brightness"])))]
        kept = mutate(Item(x, x), ("brightness",), None, 0.0, 1.0, 0.02, 0.05, 1, rng)
        # every element changes (L0 = 10 ≥ int(0.02 · 10)), so Eq. 1 keeps it only while |shift| / 255 < 0.05
        assert (kept is not None) == (abs(shift) / 255 < 0.05), shift
        if kept is not None:
            assert np.allclose(kept.x, x + shift / 255) and (kept.l0, kept.affine) == (10 * (shift != 0), False)
    # after an affine transformation the changes made before it count (Eq. 2): 3 + 1 ≥ int(0.4 · 10) and 0.3 ≥ 0.2
    spent = Item(x, x, affine=True, l0=3, linf=0.3)
    assert mutate(spent, ("pixel_change",), None, 0.0, 1.0, 0.4, 0.2, 5, np.random.default_rng(1)) is None
    fresh = Item(x, x, affine=True, l0=0, linf=0.0)
    assert mutate(fresh, ("pixel_change",), None, 0.0, 1.0, 0.4, 0.2, 5, np.random.default_rng(1)) is not None


def test_sections_and_queue_by_hand():
    bounds = Boundaries(np.array([0.0, 1.0]), np.array([1.0, 1.0]), 3)
    values = np.array([[1.0035, 1.13], [-0.0025, 5.0], [0.5, 1.0]])
    snac = sections_reached(values, bounds, "snac", 10, 0.001)
    assert [s.tolist() for s in snac] == [[3, 13], [21], []]  # 0.0035 / 0.001 → 3; 0.13 / 0.05 → 2; 80 → 10
    nbc = sections_reached(values, bounds, "nbc", 10, 0.001)
    assert [sorted(s.tolist()) for s in nbc] == [[3, 13], [21, 24], []]  # 0.0025 / 0.001 → 2, after the 22 upper
    assert section_count(bounds, "snac", 10) == 22 and section_count(bounds, "nbc", 10) == 44
    assert [selection_probability(f) for f in range(6)] == pytest.approx([0.8, 0.6, 0.4, 0.2, 0.2, 0.2])
    queue = [Item(np.zeros(1), np.zeros(1)) for _ in range(3)]
    rng, again = np.random.default_rng(4), np.random.default_rng(4)
    position, taken = 0, []
    for _ in range(5):
        item, position = pick(queue, position, "prob", rng)
        taken.append(queue.index(item))
    hand, at, picks = [], 0, [0, 0, 0]
    while len(hand) < 5:
        if again.random() < [0.8, 0.6, 0.4, 0.2][min(picks[at], 3)]:
            hand.append(at)
            picks[at] += 1
        at = (at + 1) % 3
    assert taken == hand and [q.picked for q in queue] == picks


def test_boundaries_come_from_the_first_reference_samples(tmp_path):
    path = two_layer_net(tmp_path / "two.onnx")
    x = np.array([[0.1, 0.2, 0.3], [0.9, 0.1, 0.4], [0.3, 0.8, 0.2], [5.0, 5.0, 5.0]], np.float32)
    model = as_model(str(path))
    data = as_dataset((x, np.zeros(4, np.int64)), model.data_shape)
    method = METHODS["deephunter"]
    bounds = method.prepare(model, data, method.make_options({"reference_samples": 3}), "cpu")
    h = _hidden(x[:3])
    assert bounds.samples == 3 and np.allclose(bounds.low, h.min(axis=0)) and np.allclose(bounds.high, h.max(axis=0))


def test_deephunter_from_the_cli_writes_the_standard_run(tmp_path, cli):
    out = tmp_path / "run"
    done = cli("synthesize", EXAMPLES / "mnist_lenet.onnx", "--data", EXAMPLES / "mnist_sample.npz", "--method",
               "deephunter", "--samples", "1", "--iterations", "3", "--mutants", "5", "--out", out)
    assert done.exit_code == 0, done.output
    report = json.loads((out / "report.json").read_text())
    assert report["method"] == "deephunter" and report["params"]["criterion"] == "snac"
    assert report["mutations"] + report["mutants_given_up"] == 3 * 5 * report["seeds"]["count"]
    assert report["boundary_samples"] == 1000 and "test errors in" in done.output
    assert 0 < report["error_categories"] <= report["test_errors"]
    with np.load(out / "inputs.npz") as arrays:
        assert (arrays["synthesized"] != arrays["original"]).any()
        assert arrays["synthesized"].min() >= 0 and arrays["synthesized"].max() <= 1
    assert (out / "samples.png").is_file()


@pytest.mark.parametrize("args, message", [(["--criterion", "kmnc"], "criterion"), (["--mutants", "0"], "mutants"),
                                           (["--l0-share", "0"], "l0-share")])
def test_bad_deephunter_options_are_one_line(tmp_path, cli, args, message):
    done = cli("synthesize", EXAMPLES / "mnist_dense.onnx", "--data", EXAMPLES / "mnist_sample.npz", "--method",
               "deephunter", *args, "--out", tmp_path / "run")
    lines = done.stderr.strip().splitlines()
    assert done.exit_code != 0 and len(lines) == 1 and message in lines[0] and "Traceback" not in done.output
    assert not (tmp_path / "run").exists()
