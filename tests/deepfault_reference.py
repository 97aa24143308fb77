"""DeepFault's original hit-spectrum algorithm, written out as a per-layer, per-neuron, per-sample loop.

Shares nothing with the library but onnxruntime: the IDX file is decoded here, outputs are exposed by
editing the protobuf, counting is plain Python. Used by the tests and by benchmarks/spectrum.py.
"""
from __future__ import annotations

import gzip

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper


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
    name = session.get_inputs()[0].name
    runs = [session.run(None, {name: x[i:i + batch]}) for i in range(0, len(x), batch)]
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
