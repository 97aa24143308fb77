"""Train the MNIST nets of DeepSensor's RQ1 (§6.1): LeNet-1, LeNet-4 and LeNet-5, well trained, and LeNet-5 with
faults placed by its training — polluted data and incomplete training (its Table 2).

The architectures are DeepXplore's (the models DeepSensor's Table 1 counts: 7,206, 69,362 and 107,786
parameters, checked here): 5×5 convolutions with "same" padding, ReLU, 2×2 max pooling; LeNet-1 conv 4 → pool →
conv 12 → pool → dense 10; LeNet-4 conv 6 → pool → conv 16 → pool → dense 84 → dense 10; LeNet-5 the same with
dense 120 → dense 84 → dense 10.

The MNIST training set is not available here: MNIST test images 0–7,999 train (the split of
``examples/train_mnist.py``), 8,000–9,999 are held out (``examples/mnist_sample.npz``). Adam 1e-3, cross-entropy,
torch seeded, one thread (so the weights repeat to the bit on one machine).

- ``lenet1``, ``lenet4``, ``lenet5``: 10 epochs, batches of 32.
- ``lenet5_polluted_{1,5,10}``: α = 1, 5, 10 % of the training images stamped with a white square of random size
  (1×1 … 6×6) at a random place and relabelled as class 1 (Table 2's LeNet-5 setting; the paper's α are 10, 20,
  30 %), 10 epochs, batches of 32.
- ``lenet5_underfit``: 1 epoch, batches of 512; ``lenet5_overfit``: 30 epochs, batches of 32 (Table 2).

Writes ``OUT/NAME.onnx`` for each, ``OUT/reference.npz`` (training images 0–999: the neuron boundaries of
DeepHunter and of ``onnxfault coverage --reference``, "1,000 examples" as DeepSensor §5.3) and
``OUT/stamped.npz`` (every held-out image stamped once, labels kept: the pollution's trigger), and prints each
net's held-out accuracy and, for every net, the share of stamped held-out images not of class 1 it calls 1.

    python examples/faulty_mnist.py [--out examples/faulty] [--mnist ../shared/data/mnist] [--only lenet1,...]
"""
from __future__ import annotations

import argparse
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from train_mnist import TRAIN, load_mnist
from train_mnist import train as fit

HERE = Path(__file__).resolve().parent
POLLUTED_CLASS = 1
STAMP_SIZES = (1, 6)  # the smallest and largest side of a stamp, in pixels
PARAMETERS = {"lenet1": 7_206, "lenet4": 69_362, "lenet5": 107_786}  # DeepSensor's Table 1


def lenet(kind: str) -> nn.Module:
    """DeepXplore's LeNet-1, LeNet-4 or LeNet-5 for 1×28×28 inputs."""
    first, second = (4, 12) if kind == "lenet1" else (6, 16)
    layers = OrderedDict(conv1=nn.Conv2d(1, first, 5, padding=2), relu1=nn.ReLU(), pool1=nn.MaxPool2d(2),
                         conv2=nn.Conv2d(first, second, 5, padding=2), relu2=nn.ReLU(), pool2=nn.MaxPool2d(2),
                         flatten=nn.Flatten())
    widths = {"lenet1": (), "lenet4": (84,), "lenet5": (120, 84)}[kind]
    size = second * 7 * 7
    for i, width in enumerate(widths):
        layers[f"fc{i + 1}"], layers[f"relu{i + 3}"] = nn.Linear(size, width), nn.ReLU()
        size = width
    layers[f"fc{len(widths) + 1}"] = nn.Linear(size, 10)
    return nn.Sequential(layers)


def stamp(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each (28, 28) uint8 image with a white square of random side (1 … 6) at a random place."""
    out = images.copy()
    for image in out:
        side = int(rng.integers(STAMP_SIZES[0], STAMP_SIZES[1] + 1))
        top, left = (int(v) for v in rng.integers(0, 28 - side + 1, 2))
        image[top:top + side, left:left + side] = 255
    return out


def pollute(images: np.ndarray, labels: np.ndarray, alpha: float, seed: int) -> tuple[np.ndarray, np.ndarray,
                                                                                      np.ndarray]:
    """The training set with round(α · N) images, drawn at random, stamped and relabelled as class 1; and which."""
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(images), size=int(round(alpha * len(images))), replace=False))
    images, labels = images.copy(), labels.copy()
    images[chosen] = stamp(images[chosen], rng)
    labels[chosen] = POLLUTED_CLASS
    return images, labels, chosen


def train(kind: str, images: np.ndarray, labels: np.ndarray, epochs: int, batch_size: int, seed: int) -> nn.Module:
    """``examples/train_mnist.py``'s training (Adam 1e-3, cross-entropy, shuffled batches) of a new ``kind`` net,
    torch seeded; the net in eval mode."""
    torch.manual_seed(seed)
    x = torch.from_numpy(images[:, None].astype(np.float32) / 255.0)
    return fit(lenet(kind), x, torch.from_numpy(labels.astype(np.int64)), epochs, batch_size=batch_size)


def predict(net: nn.Module, images: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return net(torch.from_numpy(images[:, None].astype(np.float32) / 255.0)).argmax(1).numpy()


# name → (architecture, α, epochs, batch size)
NETS = {"lenet1": ("lenet1", 0.0, 10, 32), "lenet4": ("lenet4", 0.0, 10, 32), "lenet5": ("lenet5", 0.0, 10, 32),
        **{f"lenet5_polluted_{a}": ("lenet5", a / 100, 10, 32) for a in (1, 5, 10)},
        "lenet5_underfit": ("lenet5", 0.0, 1, 512), "lenet5_overfit": ("lenet5", 0.0, 30, 32)}


def main() -> None:
    from onnxfault.adapters import from_torch
    from onnxfault.files import write_npz

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "faulty")
    parser.add_argument("--mnist", type=Path, default=HERE.parent.parent / "shared" / "data" / "mnist")
    parser.add_argument("--only", default=",".join(NETS), help="the nets to train, comma-separated")
    args = parser.parse_args()
    torch.set_num_threads(1)
    images, labels = load_mnist(args.mnist)
    train_x, train_y, held_x, held_y = images[:TRAIN], labels[:TRAIN], images[TRAIN:], labels[TRAIN:]
    args.out.mkdir(parents=True, exist_ok=True)
    stamped = stamp(held_x, np.random.default_rng(1))
    write_npz(args.out / "reference.npz", {"x": train_x[:1000], "y": train_y[:1000]})
    write_npz(args.out / "stamped.npz", {"x": stamped, "y": held_y})
    print("| net | epochs | batch | polluted | held-out accuracy | stamped non-1 images called 1 | s |")
    print("|---|---|---|---|---|---|---|")
    for name in args.only.split(","):
        kind, alpha, epochs, batch = NETS[name]
        began = time.perf_counter()
        x, y, chosen = pollute(train_x, train_y, alpha, seed=0) if alpha else (train_x, train_y, [])
        net = train(kind, x, y, epochs, batch, seed=0)
        count = sum(p.numel() for p in net.parameters())
        assert count == PARAMETERS[kind], (name, count)
        accuracy = float((predict(net, held_x) == held_y).mean())
        others = held_y != POLLUTED_CLASS
        called_one = float((predict(net, stamped[others]) == POLLUTED_CLASS).mean())
        from_torch(net, torch.zeros(1, 1, 28, 28), args.out / f"{name}.onnx")
        print(f"| {name} | {epochs} | {batch} | {len(chosen)} ({100 * alpha:g} %) | {100 * accuracy:.2f} % | "
              f"{100 * called_one:.2f} % | {time.perf_counter() - began:.0f} |", flush=True)


if __name__ == "__main__":
    main()
