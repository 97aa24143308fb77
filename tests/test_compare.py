"""``onnxfault.compare``: class-score differences, spectra and ranking agreement of two models, checked against
onnxruntime and numpy computed here (layer activity, counts, Spearman's ρ from scipy)."""
from __future__ import annotations

import json
from html.parser import HTMLParser

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper
from scipy.stats import spearmanr

from conftest import EXAMPLES

from onnxfault import OnnxFaultError, compare
from onnxfault.comparison import CompareResult, channel_first_order
from onnxfault.measures import score
from onnxfault.model import Layer

LENET = EXAMPLES / "mnist_lenet.onnx"
SAMPLE = EXAMPLES / "mnist_sample.npz"
LAYERS = ("relu1", "relu2", "relu3", "relu4")  # LeNet's candidate layers, all after a ReLU
MEASURES = ("tarantula", "ochiai", "dstar")


def sample(limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    with np.load(SAMPLE) as data:
        return data["x"][:limit], data["y"][:limit].astype(np.int64)


def perturbed_lenet() -> onnx.ModelProto:
    """The shipped LeNet with one weight of conv2 changed (+0.8)."""
    proto = onnx.load(str(LENET))
    weight = next(i for i in proto.graph.initializer if i.name == "conv2.weight")
    array = numpy_helper.to_array(weight).copy()
    array[3, 2, 2, 2] += np.float32(0.8)
    weight.CopyFrom(numpy_helper.from_array(array, "conv2.weight"))
    return proto


def run(proto: onnx.ModelProto, x: np.ndarray) -> dict[str, np.ndarray]:
    """Logits and LeNet's ReLU layers for the uint8 images ``x``, by onnxruntime on the model as given."""
    exposed = onnx.ModelProto()
    exposed.CopyFrom(proto)
    exposed.graph.output.extend(onnx.ValueInfoProto(name=n) for n in LAYERS)
    session = ort.InferenceSession(exposed.SerializeToString(), providers=["CPUExecutionProvider"])
    feed = (x.astype(np.float32) / np.float32(255))[:, None]
    return dict(zip(["logits", *LAYERS], session.run(None, {"input": feed})))


def hand_counts(outputs: dict[str, np.ndarray], y: np.ndarray) -> np.ndarray:
    """(4, neurons) counts as, af, ns, nf: a neuron is active when its channel mean is > 0 (ReLU outputs:
    when any element is > 0), a sample fails when misclassified."""
    failed = outputs["logits"].argmax(axis=1) != y
    active = np.concatenate([(outputs[n].reshape(len(y), outputs[n].shape[1], -1) > 0).any(axis=2)
                             for n in LAYERS], axis=1)
    return np.stack([(active & ~failed[:, None]).sum(0), (active & failed[:, None]).sum(0),
                     (~active & ~failed[:, None]).sum(0), (~active & failed[:, None]).sum(0)])


def test_a_model_compared_with_itself_agrees_everywhere():
    result = compare(LENET, LENET, SAMPLE)
    assert result.samples == 2000 and result.max_logit_diff == 0.0 and result.mean_logit_diff == 0.0
    assert result.prediction_agreement == 1.0
    assert result.mapping == [(n, n) for n in LAYERS]
    assert [(p.neurons, p.identical) for p in result.layers] == [(6, 6), (16, 16), (120, 120), (84, 84)]
    assert list(result.measures) == list(MEASURES)
    assert all(result.spectra_equal.values()) and all(result.rankings_equal.values())
    for agreement in result.measures.values():
        assert (agreement.top_k_shared, agreement.rank_correlation, agreement.k) == (1.0, 1.0, 10)
        assert [n.to_json() for n in agreement.top_a] == [n.to_json() for n in agreement.top_b]
    x, y = sample()
    misclassified = int(np.count_nonzero(run(onnx.load(str(LENET)), x)["logits"].argmax(1) != y))
    assert result.failing == (misclassified, misclassified)


def test_one_perturbed_weight_is_found_and_quantified_exactly():
    x, y = sample()
    original, changed = run(onnx.load(str(LENET)), x), run(perturbed_lenet(), x)
    result = compare(LENET, perturbed_lenet(), SAMPLE, k=12)

    gap = np.abs(original["logits"].astype(np.float64) - changed["logits"].astype(np.float64))
    assert result.max_logit_diff == float(gap.max()) > 0
    assert result.mean_logit_diff == pytest.approx(float(gap.mean()), rel=1e-12)
    same = np.count_nonzero(original["logits"].argmax(1) == changed["logits"].argmax(1))
    assert result.prediction_agreement == same / 2000 < 1.0

    counts = [hand_counts(original, y), hand_counts(changed, y)]
    equal = (counts[0] == counts[1]).all(axis=0)
    bounds = np.cumsum([0, 6, 16, 120, 84])
    assert [p.identical for p in result.layers] == [int(equal[s:e].sum()) for s, e in zip(bounds[:-1], bounds[1:])]
    assert not any(p.equal for p in result.layers)  # changed predictions move counts in every layer
    assert result.failing == tuple(int(np.count_nonzero(o["logits"].argmax(1) != y)) for o in (original, changed))

    for measure in MEASURES:
        scores = [score(measure, c) for c in counts]
        agreement = result.measures[measure]
        assert agreement.scores_equal is False and result.spectra_equal[measure] is False
        assert agreement.rank_correlation == pytest.approx(spearmanr(*scores).statistic, rel=1e-12)
        tops = [{(n.tensor, n.index) for n in side} for side in (agreement.top_a, agreement.top_b)]
        assert agreement.top_k_shared == len(tops[0] & tops[1]) / 12
        for side, s, c in ((agreement.top_a, scores[0], counts[0]), (agreement.top_b, scores[1], counts[1])):
            flat = [bounds[LAYERS.index(n.tensor)] + n.index for n in side]
            assert [n.score for n in side] == s[flat].tolist()  # the top scores, best first
            assert sorted(s, reverse=True)[:12] == [n.score for n in side]
            assert [[n.as_, n.af, n.ns, n.nf] for n in side] == c[:, flat].T.tolist()
        assert agreement.top_k_equal == ([(n.tensor, n.index, n.score) for n in agreement.top_a] ==
                                         [(n.tensor, n.index, n.score) for n in agreement.top_b])


def test_a_torch_module_agrees_with_its_onnx_export(tmp_path):
    torch = pytest.importorskip("torch")
    from onnxfault.adapters import from_torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 5), torch.nn.ReLU(), torch.nn.MaxPool2d(4),
                              torch.nn.Flatten(), torch.nn.Linear(144, 16), torch.nn.ReLU(),
                              torch.nn.Linear(16, 10)).eval()
    example = torch.zeros(1, 1, 28, 28)
    exported = from_torch(net, example, tmp_path / "net.onnx").path
    result = compare(net, exported, SAMPLE, example_input=example)
    assert result.mapping == [("1", "1"), ("5", "5")]  # tensors named after the ReLU modules
    assert result.max_logit_diff < 1e-5 and result.prediction_agreement == 1.0
    assert all(result.spectra_equal.values()) and all(result.rankings_equal.values())
    assert result.model_a.startswith("torch module") and result.model_b == str(exported)


def test_data_in_memory_gives_what_the_file_gives():
    x, y = sample()
    by_file = compare(LENET, perturbed_lenet(), SAMPLE, k=5).to_json()
    batches = [(x[i:i + 300], y[i:i + 300]) for i in range(0, 2000, 300)]
    for data in ((x, y), batches):
        in_memory = compare(LENET, perturbed_lenet(), data, k=5).to_json()
        assert {**in_memory, "data": None} == {**by_file, "data": None}
    with pytest.raises(OnnxFaultError, match=r"^data: .*iterator.*second pass"):
        compare(LENET, LENET, iter(batches))


def test_pairs_name_the_layers_to_compare():
    result = compare(LENET, LENET, SAMPLE, pairs={"relu4": "relu4", "relu3": "relu3"}, measures=("ochiai",), k=3)
    assert result.mapping == [("relu4", "relu4"), ("relu3", "relu3")]
    assert [p.neurons for p in result.layers] == [84, 120] and list(result.measures) == ["ochiai"]
    assert result.measures["ochiai"].k == 3


def test_element_neurons_pair_in_channel_first_order():
    chw = np.arange(4 * 3 * 2).reshape(4, 3, 2) * 10
    hwc = np.moveaxis(chw, 0, -1)  # the same values, laid out (H, W, C)
    order = channel_first_order(Layer("t", "Relu", (3, 2, 4), 2), "element")
    assert hwc.ravel()[order].tolist() == chw.ravel().tolist()
    assert channel_first_order(Layer("t", "Relu", (3, 2, 4), 2), "channel").tolist() == [0, 1, 2, 3]
    assert channel_first_order(Layer("t", "Relu", (4, 3, 2), 0), "element").tolist() == list(range(24))


def test_save_writes_the_result_as_json(tmp_path):
    result = compare(LENET, perturbed_lenet(), SAMPLE, measures=("dstar",), k=2)
    path = result.save(tmp_path / "compare.json")
    saved = json.loads(path.read_text())
    assert saved["max_logit_diff"] == result.max_logit_diff and saved["samples"] == 2000
    assert [(p["tensor_a"], p["identical"]) for p in saved["layers"]] == [(p.tensor_a, p.identical)
                                                                          for p in result.layers]
    assert saved["measures"]["dstar"]["top_a"] == [n.to_json() for n in result.measures["dstar"].top_a]
    assert saved["model_b"] == "onnx.ModelProto (in memory)"


class Tables(HTMLParser):
    """Per table: its caption and its body rows, each cell's data-value (the exact number) or its text."""

    def __init__(self):
        super().__init__()
        self.tables, self._tag, self._value = [], None, None

    def handle_starttag(self, tag, attrs):
        self._tag, self._value = tag, dict(attrs).get("data-value")
        if tag == "table":
            self.tables.append(["", []])
        elif tag == "tr" and self.tables:
            self.tables[-1][1].append([])

    def handle_data(self, data):
        if self._tag == "caption":
            self.tables[-1][0] = data
        elif self._tag in ("td", "th"):
            self.tables[-1][1][-1].append(self._value or data)

    def handle_endtag(self, tag):
        self._tag = None


def test_display_shows_the_numbers():
    from rich.console import Console

    result = compare(LENET, perturbed_lenet(), SAMPLE)
    tables = Tables()
    tables.feed(result._repr_html_())
    captions = [caption for caption, _ in tables.tables]
    assert captions == ["Class scores", "Spectra per paired layer", "Rankings (top-10)"]
    scores, layers, rankings = (rows[1:] for _, rows in tables.tables)  # rows after the header
    assert ["max |Δ score|", repr(result.max_logit_diff)] in scores
    assert layers == [[str(i + 1), p.tensor_a, p.tensor_b, str(p.neurons), str(p.identical)]
                      for i, p in enumerate(result.layers)]
    assert [[r[0], r[4]] for r in rankings] == [[m, repr(a.rank_correlation)] for m, a in result.measures.items()]
    console = Console(width=200, record=True, file=open("/dev/null", "w"))
    console.print(result)
    text = console.export_text()
    assert "Spectra per paired layer" in text and "relu3" in text and f"{result.max_logit_diff:.4g}" in text
    assert repr(result).startswith("CompareResult(") and "on 2000 samples" in repr(result)
    assert isinstance(result, CompareResult)


def test_bad_input_is_one_clear_error(tmp_path):
    torch = pytest.importorskip("torch")
    from onnxfault.adapters import from_torch

    with pytest.raises(OnnxFaultError, match=r"^model_a: .*object.*a torch.nn.Module \(with example_input=\)"):
        compare(object(), LENET, SAMPLE)
    with pytest.raises(OnnxFaultError, match="^model_b: .*without example_input"):
        compare(LENET, torch.nn.Linear(784, 10), SAMPLE)
    five = from_torch(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 5)), torch.zeros(1, 1, 28, 28),
                      tmp_path / "five.onnx").path
    with pytest.raises(OnnxFaultError, match="model_a has 10 classes and model_b 5"):
        compare(LENET, five, SAMPLE)
    with pytest.raises(OnnxFaultError, match=r"model_a has 4 layers \(relu1, .*, relu4\) and model_b 2 \(relu1, relu2\)"):
        compare(LENET, EXAMPLES / "mnist_dense.onnx", SAMPLE)
    with pytest.raises(OnnxFaultError, match="'relu3' .* and 'relu4' .* do not hold the same neurons"):
        compare(LENET, LENET, SAMPLE, pairs={"relu3": "relu4"})
    with pytest.raises(OnnxFaultError, match="measure 'shapley' scores from the model"):
        compare(LENET, LENET, SAMPLE, measures=("shapley",))
    with pytest.raises(OnnxFaultError, match="^model_b: unknown tensor 'nope'"):
        compare(LENET, LENET, SAMPLE, pairs={"relu3": "nope"})
    with pytest.raises(OnnxFaultError, match="`k` must be at least 1"):
        compare(LENET, LENET, SAMPLE, k=0)
