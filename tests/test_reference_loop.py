"""On real networks exported from torch and the real MNIST test set, the vectorized spectrum equals, to
the integer, DeepFault's original per-neuron, per-sample loop written out below.

The loop shares nothing with the library but onnxruntime: the IDX file is decoded here, outputs are
exposed by editing the protobuf, and counting is plain Python.
"""
from __future__ import annotations

import gzip

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from onnxfault import DataOptions, load_model, localize


def read_mnist(images_path):
    with gzip.open(images_path) as fh:
        x = np.frombuffer(fh.read(), np.uint8, offset=16).reshape(-1, 1, 28, 28)
    with gzip.open(str(images_path).replace("images-idx3", "labels-idx1")) as fh:
        y = np.frombuffer(fh.read(), np.uint8, offset=8).astype(np.int64)
    return x.astype(np.float32) / 255.0, y


def forward(model_path, x, tensors, batch=256):
    """Logits and the named tensors, by editing graph.output directly (no graph-surgery code)."""
    proto = onnx.load(str(model_path))
    for name in tensors:
        proto.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    runs = [session.run(None, {"input": x[i:i + batch]}) for i in range(0, len(x), batch)]
    return [np.concatenate([r[k] for r in runs]) for k in range(1 + len(tensors))]


def deepfault_loop(activations, predictions, labels, failed_if, granularity, threshold):
    """DeepFault's algorithm: for each layer, neuron and sample, compare the neuron's value with δ."""
    rows = []
    for acts in activations:
        per_sample_rank = acts.ndim - 1
        n_neurons = acts.shape[1] if granularity == "channel" and per_sample_rank > 1 else int(np.prod(acts.shape[1:]))
        for j in range(n_neurons):
            a_s = a_f = n_s = n_f = 0
            for i in range(len(labels)):
                if granularity == "channel" and per_sample_rank > 1:
                    value = np.mean(acts[i][j], dtype=np.float64)
                else:
                    value = acts[i].flat[j]
                failed = failed_if(predictions[i], labels[i])
                if value > threshold:
                    if failed:
                        a_f += 1
                    else:
                        a_s += 1
                elif failed:
                    n_f += 1
                else:
                    n_s += 1
            rows.append((a_s, a_f, n_s, n_f))
    return np.array(rows, np.int64).T


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
