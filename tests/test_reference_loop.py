"""On real networks exported from torch and the real MNIST test set, the vectorized spectrum equals, to
the integer, DeepFault's original per-neuron, per-sample loop (tests/deepfault_reference.py).

The loop shares nothing with the library but onnxruntime: it decodes the IDX file itself, exposes outputs
by editing the protobuf, and counts in plain Python.
"""
from __future__ import annotations

import numpy as np
import pytest

from onnxfault import DataOptions, load_model, localize

from deepfault_reference import deepfault_loop, forward, read_mnist


MODES = {
    "all": (dict(), lambda p, y: p != y, None),
    "class": (dict(cls=3), lambda p, y: p != y, 3),
    "target": (dict(target=5), lambda p, y: p == 5, None),
}


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("net, granularity, limit", [
    ("mnist_dense", "channel", None),
    ("mnist_lenet", "channel", None),
    ("mnist_lenet", "element", 300),  # 6,508 neurons: the Python loop is kept to 300 samples
])
def test_spectrum_equals_deepfault_loop(mnist_images, net, granularity, limit, mode):
    from conftest import EXAMPLES

    path = EXAMPLES / f"{net}.onnx"
    kwargs, failed_if, only_class = MODES[mode]
    x, y = read_mnist(mnist_images)
    if only_class is not None:  # --class selects first, --limit then keeps the first N selected
        x, y = x[y == only_class], y[y == only_class]
    if limit:
        x, y = x[:limit], y[:limit]
    model = load_model(path)
    tensors = [layer.tensor for layer in model.layers]
    logits, *activations = forward(path, x, tensors)
    want = deepfault_loop(activations, logits.argmax(1), y, failed_if, granularity, 0.0)

    got = localize(model, mnist_images, granularity=granularity, k=1, **kwargs,
                   data_options=DataOptions(limit=limit))
    assert got.spectrum.samples == len(y)
    assert got.spectrum.counts.shape == want.shape
    assert np.array_equal(got.spectrum.counts, want)
    assert (got.spectrum.counts.sum(axis=0) == len(y)).all()
    assert got.spectrum.failing == int(sum(failed_if(p, t) for p, t in zip(logits.argmax(1), y)))


def test_dense_granularities_agree(mnist_images, dense_onnx):
    a = localize(dense_onnx, mnist_images, granularity="channel", data_options=DataOptions(limit=1000))
    b = localize(dense_onnx, mnist_images, granularity="element", data_options=DataOptions(limit=1000))
    assert np.array_equal(a.spectrum.counts, b.spectrum.counts)
