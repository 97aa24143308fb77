"""Modern architectures end to end, checked against torch on the source module.

Small seeded PyTorch versions of ResNet, DenseNet, Inception (LRN), MobileNetV2/V3, EfficientNet, ConvNeXt,
ViT, a U-Net-like net and SqueezeNet with (N, C, 1, 1) scores (examples/architectures.py) are exported at
opsets 17 and 20 with torch's TorchScript exporter. On each: the neuron layers are sensible, `localize`
counts every sample, the ONNX→torch adapter's input gradient equals torch autograd on the source module,
FGSM through onnxfault equals a plain-torch FGSM on the source module, and pgd, hs and deepfault run within
their bounds.
"""
from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from conftest import EXAMPLES

sys.path.insert(0, str(EXAMPLES))
import architectures  # noqa: E402

OPSETS = (17, 20)
SAMPLES = 24
# ops that must label some candidate layer: the architecture's characteristic activation or normalization
EXPECTED_OPS = {
    "resnet": {"Relu", "Conv"}, "densenet": {"Relu", "Conv"}, "inception": {"Relu"}, "mobilenet_v2": {"Clip", "Conv"},
    "mobilenet_v3": {"HardSwish", "HardSigmoid", "Conv"}, "efficientnet": {"Swish", "Sigmoid", "Conv"},
    "convnext": {"Gelu", "LayerNormalization", "Conv"}, "vit": {"Gelu", "LayerNormalization", "MatMul"},
    "unet": {"Relu"}, "squeezenet": {"Relu"},
}
# how many layers of these ops (one per block: a written-out GELU counts once, every LayerNorm counts)
EXPECTED_COUNTS = {"vit": {"LayerNormalization": 5, "Gelu": 2}, "convnext": {"LayerNormalization": 6, "Gelu": 3},
                   "efficientnet": {"Swish": 14}, "mobilenet_v3": {"HardSwish": 7}}


@pytest.fixture(scope="module", params=[(a, o) for a in architectures.ARCHITECTURES for o in OPSETS],
                ids=lambda p: f"{p[0]}-opset{p[1]}")
def exported(request, tmp_path_factory):
    """(name, source module, loaded model, data file, x, labels): the module exported, and 24 random
    images labelled with its own predictions except every fourth one (so some samples fail)."""
    from onnxfault import load_model
    from onnxfault.adapters import from_torch

    name, opset = request.param
    folder = tmp_path_factory.mktemp(f"{name}{opset}")
    torch.manual_seed(0)
    module = architectures.ARCHITECTURES[name]().eval()
    path = from_torch(module, torch.rand(1, 3, 32, 32), folder / "model.onnx", opset=opset).path
    x = np.random.default_rng(1).random((SAMPLES, 3, 32, 32), dtype=np.float32)
    with torch.no_grad():
        y = module(torch.from_numpy(x)).reshape(SAMPLES, -1).argmax(1).numpy()
    y[::4] = (y[::4] + 1) % 10
    np.savez(folder / "data.npz", x=x, y=y)
    return name, module, load_model(path), folder / "data.npz", x, y


def test_onnxruntime_matches_the_source(exported):
    _, module, model, _, x, _ = exported
    with torch.no_grad():
        want = module(torch.from_numpy(x)).reshape(len(x), -1).numpy()
    assert np.abs(model.session("cpu").run(x)[0] - want).max() < 1e-4


def test_layers_and_localize(exported):
    from onnxfault import localize

    name, _, model, data, _, y = exported
    ops = [layer.op for layer in model.layers]
    assert EXPECTED_OPS[name] <= set(ops), sorted(ops)
    assert {op: ops.count(op) for op in EXPECTED_COUNTS.get(name, {})} == EXPECTED_COUNTS.get(name, {})
    assert not {"Erf", "Div", "Mul", "Add"} & set(ops)  # no piece of a written-out activation is a layer
    assert all(layer.shape for layer in model.layers)
    result = localize(model, data, k=5)
    counts = result.spectrum.counts
    assert (counts.sum(axis=0) == SAMPLES).all() and result.spectrum.failing >= SAMPLES // 4
    assert len(result.neurons) == 5 and np.isfinite(result.scores).all()


def plain_torch_gradient(module, x, y):
    xt = torch.from_numpy(x).requires_grad_(True)
    scores = module(xt).reshape(len(x), -1).to(torch.float64)
    torch.nn.functional.cross_entropy(scores, torch.from_numpy(y), reduction="sum").backward()
    return xt.grad.numpy()


def test_input_gradient_matches_torch_autograd(exported):
    from onnxfault.adapters.gradients import Differentiable

    _, module, model, _, x, y = exported
    got, _ = Differentiable(model.scores_only(), "cpu").loss_gradient(x[:8], y[:8])
    want = plain_torch_gradient(module, x[:8], y[:8])
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()


def test_synthesis_methods(exported, tmp_path):
    from onnxfault import synthesize

    _, module, model, data, _, _ = exported
    runs = {method: synthesize(model, data, method=method, samples=1, iterations=iterations, distance=0.1,
                              device="cpu")
            for method, iterations in (("fgsm", None), ("pgd", 3), ("hs", 3), ("deepfault", None))}
    for method, run in runs.items():
        a = run.arrays
        change = np.abs(a["synthesized"] - a["original"])
        assert np.isfinite(a["synthesized"]).all() and change.max() <= 0.1 + 1e-6, method
        low, high = run.report["params"]["clip"]
        assert a["synthesized"].min() >= low and a["synthesized"].max() <= high, method
    fgsm = runs["fgsm"].arrays
    low, high = runs["fgsm"].report["params"]["clip"]
    grad = plain_torch_gradient(module, fgsm["original"], fgsm["labels"].astype(np.int64))
    want = np.clip(fgsm["original"] + 0.1 * np.sign(grad), low, high)
    assert np.isclose(fgsm["synthesized"], want, atol=1e-6).mean() >= 0.999


def test_zoo_style_graph_at_opset_9(tmp_path):
    """What the ONNX model zoo's classic CNNs (AlexNet, GoogLeNet, SqueezeNet, DenseNet) are made of, at their
    old opset: LRN, branches merged by Sum, Dropout with a ratio attribute, BatchNormalization, Softmax
    probabilities of shape (N, C, 1, 1). The adapter computes onnxruntime's function (to 1e-6), its gradient
    passes torch's gradcheck in float64, and fgsm, hs and deepfault run through it."""
    from onnx import TensorProto, helper

    from conftest import init, make_model, save
    from onnxfault import load_model, synthesize
    from onnxfault.adapters.onnx2torch import to_torch

    rng = np.random.default_rng(0)
    weights = {"c1": (8, 3, 3, 3), "c2": (8, 8, 3, 3), "c3": (8, 8, 1, 1), "c4": (10, 8, 1, 1)}
    nodes = [helper.make_node("Conv", ["x", "c1"], ["h1"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["h1"], ["r1"]),
             helper.make_node("LRN", ["r1"], ["n1"], size=5, alpha=1e-4, beta=0.75, bias=1.0),
             helper.make_node("MaxPool", ["n1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Conv", ["p1", "c2"], ["h2"], pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["h2", "g", "b", "m", "v"], ["bn"]),
             helper.make_node("Relu", ["bn"], ["r2"]), helper.make_node("Conv", ["p1", "c3"], ["h3"]),
             helper.make_node("Relu", ["h3"], ["r3"]), helper.make_node("Sum", ["r2", "r3", "p1"], ["s"]),
             helper.make_node("Dropout", ["s"], ["d"], ratio=0.5), helper.make_node("Conv", ["d", "c4"], ["h4"]),
             helper.make_node("GlobalAveragePool", ["h4"], ["gap"]), helper.make_node("Softmax", ["gap"], ["prob"], axis=1)]
    inits = [init(name, rng.standard_normal(shape) * 0.5) for name, shape in weights.items()] + [
        init("g", rng.random(8) + 0.5), init("b", rng.standard_normal(8)), init("m", rng.standard_normal(8) * 0.1),
        init("v", rng.random(8) + 0.5)]
    model = make_model(nodes, [("x", TensorProto.FLOAT, [1, 3, 16, 16])], [("prob", TensorProto.FLOAT, [1, 10, 1, 1])],
                       inits, opset=9)
    path = save(model, tmp_path / "zoo.onnx")
    loaded = load_model(path)
    assert loaded.num_classes == 10 and loaded.scores_are_probabilities
    x = rng.random((6, 3, 16, 16), dtype=np.float32)
    module = to_torch(loaded.scores_only()).double()
    assert np.abs(module(torch.from_numpy(x).double())[0].numpy() - loaded.session("cpu").run(x)[0]).max() < 1e-6
    point = torch.from_numpy(x[:1].astype(np.float64)).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: module(t)[0], (point,), eps=1e-6, atol=1e-6, fast_mode=True)
    y = loaded.session("cpu").run(x)[0].argmax(1)
    y[::3] = (y[::3] + 1) % 10
    np.savez(tmp_path / "data.npz", x=x, y=y)
    for method in ("fgsm", "hs", "deepfault"):
        run = synthesize(loaded, tmp_path / "data.npz", method=method, samples=1, distance=0.1, device="cpu")
        assert np.abs(run.arrays["synthesized"] - run.arrays["original"]).max() <= 0.1 + 1e-6
