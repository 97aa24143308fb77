"""Hit spectra and scores on tiny hand-built ONNX graphs, against counts worked out by hand."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

from onnxfault import DataOptions, localize
from onnxfault.files import write_npz

from conftest import init, make_model, save

# tiny_mlp: h = relu(x0, x1, x0 - x1); logits = (h0, h1); argmax ties go to class 0.
X = np.array([[2, 1], [1, 2], [-1, 1], [3, -1], [-1, -2], [0.5, 3]], np.float32)
Y = np.array([0, 0, 1, 1, 0, 1])
# predictions 0 1 1 0 0 1 → samples 1 and 3 fail.
HAND = {  # neuron: (as, af, ns, nf), threshold 0, all samples
    0: (2, 2, 2, 0),  # active on samples 0 1 3 5
    1: (3, 1, 1, 1),  # active on 0 1 2 5
    2: (2, 1, 2, 1),  # active on 0 3 4
}


@pytest.fixture
def tiny_data(tmp_path):
    return write_npz(tmp_path / "tiny.npz", {"x": X, "y": Y})


def counts_by_index(result):
    return {n.index: (n.as_, n.af, n.ns, n.nf) for n in result.neurons}


def test_counts_and_ochiai_by_hand(tiny_mlp, tiny_data):
    result = localize(tiny_mlp, tiny_data, measure="ochiai", k=3)
    assert [layer.tensor for layer in result.layers] == ["h"]
    assert result.spectrum.samples == 6 and result.spectrum.failing == 2
    assert counts_by_index(result) == HAND
    # Ochiai = af / sqrt(F (af + as)), F = 2
    assert [n.index for n in result.neurons] == [0, 2, 1]
    assert [n.score for n in result.neurons] == pytest.approx([2 / np.sqrt(8), 1 / np.sqrt(6), 1 / np.sqrt(8)])
    assert (result.spectrum.counts.sum(axis=0) == 6).all()


@pytest.mark.parametrize("measure, expected", [
    ("tarantula", {0: 1 / 1.5, 1: 0.5 / 1.25, 2: 0.5}),  # (af/F) / (af/F + as/P), P = 4
    ("dstar", {0: 8 / 2, 1: 1 / 4, 2: 1 / 3}),  # af^3 / (as + nf)
])
def test_other_measures_by_hand(tiny_mlp, tiny_data, measure, expected):
    result = localize(tiny_mlp, tiny_data, measure=measure, k=3)
    assert {n.index: n.score for n in result.neurons} == pytest.approx(expected)


def test_threshold_is_strict(tiny_mlp, tiny_data):
    # δ = 1: neuron 0 is active only where x0 > 1 (samples 0 and 3; sample 1 has exactly 1)
    result = localize(tiny_mlp, tiny_data, k=3, threshold=1.0)
    assert counts_by_index(result)[0] == (1, 1, 3, 1)


def test_class_mode_by_hand(tiny_mlp, tiny_data):
    # class 0 = samples 0 1 4; sample 1 fails
    result = localize(tiny_mlp, tiny_data, k=3, cls=0)
    assert result.spectrum.samples == 3 and result.spectrum.failing == 1
    assert counts_by_index(result)[0] == (1, 1, 1, 0)


def test_target_mode_by_hand(tiny_mlp, tiny_data):
    # target 1: "failing" = predicted 1 = samples 1 2 5, whatever their labels
    result = localize(tiny_mlp, tiny_data, k=3, target=1)
    assert result.spectrum.failing == 3
    assert counts_by_index(result)[0] == (2, 2, 1, 1)
    narrowed = localize(tiny_mlp, tiny_data, k=3, target=1, data_options=DataOptions(classes=[0]))
    assert narrowed.spectrum.samples == 3 and counts_by_index(narrowed)[0] == (1, 1, 1, 0)


@pytest.fixture
def tiny_conv(tmp_path):
    # conv output c = (x, -x) per 2×2 image (a candidate: no activation follows); logits = (c0[0,0], 0)
    w_fc = np.zeros((8, 2), np.float32)
    w_fc[0, 0] = 1.0
    nodes = [helper.make_node("Conv", ["x", "Wc"], ["c"], name="conv"),
             helper.make_node("Flatten", ["c"], ["flat"]),
             helper.make_node("Gemm", ["flat", "Wf"], ["logits"], name="fc")]
    model = make_model(nodes, [("x", TensorProto.FLOAT, ["N", 1, 2, 2])], [("logits", TensorProto.FLOAT, ["N", 2])],
                       [init("Wc", [[[[1.0]]], [[[-1.0]]]]), init("Wf", w_fc)])
    x = np.array([[[1, -3], [0, 0]], [[-1, 2], [2, 1]], [[0.5, 0.5], [-2, 0]]], np.float32)[:, None]
    data = write_npz(tmp_path / "conv.npz", {"x": x, "y": np.zeros(3, np.int64)})
    return save(model, tmp_path / "conv.onnx"), data


def test_channel_granularity_uses_spatial_mean(tiny_conv):
    model, data = tiny_conv
    result = localize(model, data, k=2, granularity="channel")
    assert [(l.tensor, l.op, l.shape) for l in result.layers] == [("c", "Conv", (2, 2, 2))]
    # means: x → (-0.5, 1, -0.25), -x → (0.5, -1, 0.25); sample 1 (predicted 1) fails
    assert counts_by_index(result) == {0: (0, 1, 2, 0), 1: (2, 0, 0, 1)}


def test_element_granularity_flat_c_order(tiny_conv):
    model, data = tiny_conv
    result = localize(model, data, k=8, granularity="element")
    assert counts_by_index(result) == {
        0: (2, 0, 0, 1), 1: (1, 1, 1, 0), 2: (0, 1, 2, 0), 3: (0, 1, 2, 0),
        4: (0, 1, 2, 0), 5: (1, 0, 1, 1), 6: (1, 0, 1, 1), 7: (0, 0, 2, 1),
    }
