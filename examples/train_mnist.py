"""Train the two small example models shipped in examples/ and cut the data sample they ship with.

The MNIST training set is not available here, so the 10,000-image MNIST *test* set in
../shared/data/mnist is split: images 0..7999 train, 8000..9999 are held out. The held-out images
(uint8) and labels become ``examples/mnist_sample.npz``; the models become ``mnist_dense.onnx``
(784-32-32-10 ReLU MLP) and ``mnist_lenet.onnx`` (LeNet-5-sized CNN); tensors carry the module names
(``relu1``, ``conv2``, …).

    python examples/train_mnist.py [--mnist ../shared/data/mnist]
"""
from __future__ import annotations

import argparse
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from onnxfault.adapters import from_torch
from onnxfault.data import open_source
from onnxfault.files import write_npz

HERE = Path(__file__).resolve().parent
TRAIN = 8000


def dense_net() -> nn.Module:
    return nn.Sequential(OrderedDict(
        flatten=nn.Flatten(), fc1=nn.Linear(784, 32), relu1=nn.ReLU(), fc2=nn.Linear(32, 32), relu2=nn.ReLU(),
        fc3=nn.Linear(32, 10)))


def lenet() -> nn.Module:
    return nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(1, 6, 5, padding=2), relu1=nn.ReLU(), pool1=nn.MaxPool2d(2),
        conv2=nn.Conv2d(6, 16, 5), relu2=nn.ReLU(), pool2=nn.MaxPool2d(2), flatten=nn.Flatten(),
        fc1=nn.Linear(400, 120), relu3=nn.ReLU(), fc2=nn.Linear(120, 84), relu4=nn.ReLU(), fc3=nn.Linear(84, 10)))


def load_mnist(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    source = open_source(folder / "t10k-images-idx3-ubyte.gz")
    return np.concatenate(list(source.chunks(10_000))), source.labels


def train(net: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, *, loss=nn.functional.cross_entropy,
          batch_size: int = 64) -> nn.Module:
    """Adam (lr 1e-3) on ``loss(net(x), y)`` over shuffled batches; the net in eval mode."""
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    for _ in range(epochs):
        order = torch.randperm(len(x))
        for start in range(0, len(x), batch_size):
            batch = order[start:start + batch_size]
            optimizer.zero_grad()
            loss(net(x[batch]), y[batch]).backward()
            optimizer.step()
    return net.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mnist", type=Path, default=HERE.parent.parent / "shared" / "data" / "mnist")
    args = parser.parse_args()
    torch.manual_seed(0)
    images, labels = load_mnist(args.mnist)
    x = torch.from_numpy(images[:, None].astype(np.float32) / 255.0)
    y = torch.from_numpy(labels)
    for name, net, epochs in (("mnist_dense", dense_net(), 10), ("mnist_lenet", lenet(), 6)):
        train(net, x[:TRAIN], y[:TRAIN], epochs)
        with torch.no_grad():
            held_out = (net(x[TRAIN:]).argmax(1) == y[TRAIN:]).float().mean().item()
        from_torch(net, x[:1], HERE / f"{name}.onnx")
        print(f"{name}.onnx: held-out accuracy {100 * held_out:.2f} % (images {TRAIN}..9999)")
    write_npz(HERE / "mnist_sample.npz", {"x": images[TRAIN:], "y": labels[TRAIN:]})
    print(f"mnist_sample.npz: {len(images) - TRAIN} held-out images (uint8) and labels")


if __name__ == "__main__":
    main()
