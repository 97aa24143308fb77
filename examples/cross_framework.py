"""The analysis does not depend on the framework a model came from.

The same architectures are built in PyTorch and in Keras 3 (a dense 5×30 LeakyReLU net and a small
LeNet), PyTorch's weights (briefly trained on the shipped MNIST sample) are copied into Keras, and
``onnxfault.compare`` takes both models in memory (exporting each to ONNX through onnxfault's adapters). A
DeepFault legacy Keras model converted by onnxfault's reader is also paired with the same weights loaded into
a PyTorch re-implementation. For each pair the script prints the largest logit difference, whether every
spectrum count and the top-10 rankings of Tarantula, Ochiai and D* agree, and how tensor names map between
the two exports (layers paired by position).

    python examples/cross_framework.py        # the Keras 3 pairs need `pip install "onnxfault[keras]"`
"""
from __future__ import annotations

import os
import sys
import tempfile
from collections import OrderedDict
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SAMPLE = HERE / "mnist_sample.npz"
DEEPFAULT = HERE.parent.parent / "shared" / "data" / "deepfault-models"
MEASURES = ("tarantula", "ochiai", "dstar")


# ---- the two architectures in PyTorch ---------------------------------------------------------------
def torch_dense():
    from torch import nn

    layers = [("flatten", nn.Flatten())]
    width = 784
    for i in range(1, 6):
        layers += [(f"fc{i}", nn.Linear(width, 30, bias=False)), (f"act{i}", nn.LeakyReLU(0.01))]
        width = 30
    return nn.Sequential(OrderedDict(layers + [("fc6", nn.Linear(30, 10, bias=False))]))


def torch_lenet():
    from train_mnist import lenet  # the network of the shipped mnist_lenet.onnx

    return lenet()


def train_briefly(net, x, y, epochs: int = 1):
    import torch

    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    for _ in range(epochs):
        for start in range(0, len(x), 50):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(net(x[start:start + 50]), y[start:start + 50]).backward()
            optimizer.step()
    return net.eval()


# ---- the same in Keras 3, with PyTorch's weights ----------------------------------------------------
def keras_dense(net):
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras

    model = keras.Sequential([keras.Input((1, 28, 28)), keras.layers.Flatten(name="flatten")])
    for i in range(1, 6):
        model.add(keras.layers.Dense(30, use_bias=False, name=f"dense_{i}"))
        model.add(keras.layers.LeakyReLU(negative_slope=0.01, name=f"leaky_re_lu_{i}"))
    model.add(keras.layers.Dense(10, use_bias=False, name="dense_6"))
    for i in range(1, 7):
        model.get_layer(f"dense_{i}").set_weights([getattr(net, f"fc{i}").weight.detach().numpy().T])
    return model


def keras_lenet(net):
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras

    L = keras.layers
    model = keras.Sequential([
        keras.Input((28, 28, 1)), L.Conv2D(6, 5, padding="same", activation="relu", name="conv2d_1"),
        L.MaxPooling2D(2, name="max_pooling2d_1"), L.Conv2D(16, 5, activation="relu", name="conv2d_2"),
        L.MaxPooling2D(2, name="max_pooling2d_2"), L.Flatten(name="flatten"),
        L.Dense(120, activation="relu", name="dense_1"), L.Dense(84, activation="relu", name="dense_2"),
        L.Dense(10, name="dense_3")])

    def w(module):
        return module.weight.detach().numpy(), module.bias.detach().numpy()

    for name, conv in (("conv2d_1", net.conv1), ("conv2d_2", net.conv2)):
        kernel, bias = w(conv)
        model.get_layer(name).set_weights([kernel.transpose(2, 3, 1, 0), bias])  # (out,in,kh,kw) → (kh,kw,in,out)
    kernel, bias = w(net.fc1)  # PyTorch flattens (C,H,W), Keras (H,W,C): reorder the rows
    model.get_layer("dense_1").set_weights([kernel.reshape(120, 16, 5, 5).transpose(2, 3, 1, 0).reshape(400, 120), bias])
    for name, fc in (("dense_2", net.fc2), ("dense_3", net.fc3)):
        kernel, bias = w(fc)
        model.get_layer(name).set_weights([kernel.T, bias])
    return model


# ---- a DeepFault legacy model and its PyTorch re-implementation --------------------------------------
def torch_from_deepfault(json_path: Path):
    """mnist_test_model_5_30_leaky_relu rebuilt in PyTorch from its .h5 kernels (read with h5py)."""
    import h5py
    import torch
    from torch import nn

    net = torch_dense()
    with h5py.File(json_path.with_suffix(".h5"), "r") as fh:
        for i in range(1, 7):
            kernel = np.asarray(fh[f"dense_{i}"][f"dense_{i}"]["kernel:0"])
            getattr(net, f"fc{i}").weight.data = torch.from_numpy(kernel.T.copy())
    return nn.Sequential(net, nn.Softmax(dim=-1)).eval()


# ---- the pairs, compared in memory with onnxfault.compare ---------------------------------------------
KERAS_PAIRS = (("dense 5×30 LeakyReLU", torch_dense, keras_dense), ("LeNet", torch_lenet, keras_lenet))
DEEPFAULT_PAIR = "DeepFault 5_30_leaky: legacy reader vs PyTorch"


def pair_names(with_keras: bool = True, with_deepfault: bool = True) -> list[str]:
    """The names of the pairs :func:`build_pairs` compares, in its order."""
    return [f"{name}: PyTorch vs Keras 3" for name, _, _ in KERAS_PAIRS if with_keras] + \
        ([DEEPFAULT_PAIR] if with_deepfault else [])


def build_pairs(folder: Path, with_keras: bool = True, with_deepfault: bool = True):
    """Compare every pair (a list of ``onnxfault.CompareResult``, in :func:`pair_names` order); ``folder``
    receives the DeepFault model converted by the legacy reader."""
    import torch

    from onnxfault import compare
    from onnxfault.adapters import convert
    from onnxfault.quiet import silenced_fds

    with np.load(SAMPLE) as sample:
        x = torch.from_numpy(sample["x"][:1000, None].astype(np.float32) / np.float32(255))
        y = torch.from_numpy(sample["y"][:1000].astype(np.int64))
    results = []
    if with_keras:
        for _, build, to_keras in KERAS_PAIRS:
            torch.manual_seed(0)
            net = train_briefly(build(), x, y)
            with silenced_fds(2):  # TensorFlow's lines when it first builds a model (cuInit)
                model = to_keras(net)
            results.append(compare(net, model, SAMPLE, measures=MEASURES, k=10, example_input=x[:1]))
    if with_deepfault:
        json_path = DEEPFAULT / "mnist_test_model_5_30_leaky_relu.json"
        legacy = convert(json_path, folder / "deepfault_legacy.onnx").path
        results.append(compare(legacy, torch_from_deepfault(json_path), SAMPLE, measures=MEASURES, k=10,
                               example_input=x[:1]))
    return results


def main() -> None:
    from onnxfault.quiet import silenced_fds

    try:
        with silenced_fds(2):  # TensorFlow's CUDA/oneDNN start-up lines, as `onnxfault convert` silences them
            import keras  # noqa: F401
        with_keras = True
    except ImportError:
        print("Keras 3 / TensorFlow not installed: skipping the PyTorch vs Keras pairs", file=sys.stderr)
        with_keras = False
    with tempfile.TemporaryDirectory() as folder:
        results = build_pairs(Path(folder), with_keras, DEEPFAULT.is_dir())
    names = pair_names(with_keras, DEEPFAULT.is_dir())
    print(f"| pair | max |logit difference| | identical spectra ({', '.join(MEASURES)}) | identical top-10 |")
    print("|---|---|---|---|")
    for name, r in zip(names, results):
        print(f"| {name} | {r.max_logit_diff:.2e} | {all(r.spectra_equal.values())} | {all(r.rankings_equal.values())} |")
    for name, r in zip(names, results):
        print(f"\n{name}: tensor names")
        for a, b in r.mapping:
            print(f"  {a:<24} ↔ {b}")


if __name__ == "__main__":
    main()
