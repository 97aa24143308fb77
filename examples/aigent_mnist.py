"""AIGENT (--method patch) on dense ReLU MNIST models at the paper's L∞ budgets, next to FGSM and PGD.

Models: examples/mnist_8_16.onnx, a 784-8-16-10 ReLU net like the paper's MNIST model (the authors' artifact
ships a 784-8-16-10 Keras model whose outputs regress one-hot targets; ours is trained the same way, MSE on
one-hot targets, on MNIST test images 0–7999; 27 KB, shipped; ``--train`` rebuilds it), the shipped
examples/mnist_dense.onnx (784-32-32-10, cross-entropy), DeepFault's 3_50_relu (../shared/data) and, with
``--authors FILE``, the authors' own mnist.h5 (github.com/KhanTooba/AIGENT, AttackMNIST/Models; not shipped).
Seeds: --samples correctly classified inputs per class, from the held-out images 8000–9999
(examples/mnist_sample.npz) for our nets and from the MNIST test set for the others.

Each budget runs AIGENT with onnxfault's defaults ("patch"), AIGENT as the paper describes it ("patch (paper)":
--relaxation paper --phases seed), FGSM (one sign step of d) and PGD (10 steps of d/10). The paper's Table I
(MNIST): AIGENT 72.0 % defect detection at L∞ 0.66 and AIGENT (high defect) 91.4 % at L∞ 0.80, both 24
pixels (3.06 %); FGSM 99.0 % at L∞ 0.1 and AutoAttack 98.4 % at L∞ 0.3, with 100 % and 78.6 % of the pixels.

    python examples/aigent_mnist.py [--samples 3] [--budgets 0.3,0.5,0.8] [--time-limit 2] [--train]
        [--authors AIGENT/AttackMNIST/Models/mnist.h5] [--ablation 0.8]

``--ablation D`` instead runs AIGENT alone at L∞ D with its settings changed one at a time (the paper's choice
for each, the paper's algorithm, the authors' α = 10) and prints the mean active neurons per hidden layer.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from method_table import HEADER, ROOT, SHARED, common_cells, run
from onnxfault import load_model
from onnxfault.adapters import convert, from_torch
from onnxfault.data import open_source
from onnxfault.synthesis.chain import dense_chain

NET = ROOT / "examples" / "mnist_8_16.onnx"
SAMPLE = ROOT / "examples" / "mnist_sample.npz"
MNIST = SHARED / "mnist" / "t10k-images-idx3-ubyte.gz"
PAPER = {"relaxation": "paper", "phases": "seed"}
# --ablation: onnxfault's defaults, each back to the paper's choice, the paper's algorithm, the authors' α
VARIANTS = {"defaults": {}, "--phases seed": {"phases": "seed"}, "--relaxation paper": {"relaxation": "paper"},
            "--weight-change max": {"weight_change": "max"}, "--relaxation paper --phases seed": PAPER,
            "--relaxation paper --phases seed --weight-change max": {**PAPER, "weight_change": "max"},
            "--weight-bound 10": {"weight_bound": 10.0}}


def net_8_16() -> nn.Module:
    return nn.Sequential(OrderedDict(fc1=nn.Linear(784, 8), relu1=nn.ReLU(), fc2=nn.Linear(8, 16),
                                     relu2=nn.ReLU(), fc3=nn.Linear(16, 10)))


def train_8_16(x: torch.Tensor, y: torch.Tensor, epochs: int = 10, seed: int = 0) -> nn.Module:
    """784-8-16-10 ReLU, MSE on one-hot targets (as the authors' model), Adam 1e-3, batches of 32."""
    from train_mnist import train

    torch.manual_seed(seed)
    return train(net_8_16(), x, nn.functional.one_hot(y, 10).float(), epochs, loss=nn.functional.mse_loss,
                 batch_size=32)


def rebuild() -> None:
    """Train examples/mnist_8_16.onnx on MNIST test images 0–7999 and print its held-out accuracy."""
    from train_mnist import TRAIN, load_mnist

    images, labels = load_mnist(SHARED / "mnist")
    x = torch.from_numpy(images.reshape(len(images), -1).astype(np.float32) / 255.0)
    y = torch.from_numpy(labels).long()
    net = train_8_16(x[:TRAIN], y[:TRAIN])
    with torch.no_grad():
        accuracy = (net(x[TRAIN:]).argmax(1) == y[TRAIN:]).float().mean().item()
    from_torch(net, x[:1], NET)
    print(f"{NET.name}: held-out accuracy {100 * accuracy:.2f} % (images {TRAIN}..9999)")


def models(folder: Path, authors: Path | None) -> list[tuple[str, Path, Path]]:
    found = [("mnist_8_16", NET, SAMPLE), ("mnist_dense", ROOT / "examples" / "mnist_dense.onnx", SAMPLE)]
    relu = SHARED / "deepfault-models" / "mnist_test_model_3_50_relu.json"
    if relu.is_file():
        found.append(("3_50_relu", Path(convert(relu, folder / "relu.onnx").path), MNIST))
    if authors is not None:
        found.append(("authors' 8_16", Path(convert(authors, folder / "authors.onnx").path), MNIST))
    return found


def active_neurons(model: Path, data: Path, count: int = 1000) -> str:
    """Mean number of active neurons per hidden layer (of its size) over the first ``count`` images."""
    loaded = load_model(model)
    chain = dense_chain(loaded.proto, loaded.output_name)
    h = next(iter(open_source(data).chunks(count))).reshape(count, -1).T / 255.0
    cells = []
    for w, b in zip(chain.weights[:-1], chain.biases[:-1]):
        z = w @ h + b[:, None]
        cells.append(f"{(z > 0).sum(axis=0).mean():.1f} of {len(b)}")
        h = np.maximum(z, 0)
    return ", ".join(cells)


def ablation(args) -> None:
    """One row per model and AIGENT setting at L∞ ``args.ablation``."""
    with tempfile.TemporaryDirectory() as folder:
        found = models(Path(folder), args.authors)
        for name, model, data in found:
            print(f"{name}: active neurons per hidden layer, mean over the first 1,000 images of its seed data: "
                  f"{active_neurons(model, data)}")
        print("\n| model | settings | detection | pixels: mean / max (mean %) | L∞ mean (attacked) | s / input | "
              "stopped at |\n" + "|---" * 7 + "|")
        for name, model, data in found:
            for label, extra in VARIANTS.items():
                options = {"objective": args.objective, "time_limit": args.time_limit, **extra}
                r = run(model, data, "patch", args.ablation, args.samples, options=options)
                linf = r["adversarial_linf"]
                cells = aigent_cells(r).split(" | ")
                print(f"| {name} | {label} | {cells[0].strip()} | {cells[1]} | "
                      f"{'-' if linf is None else format(linf['mean'], '.3f')} | "
                      f"{r['seconds'] / r['seeds']['count']:.3f} | {cells[3]}", flush=True)


def aigent_cells(r: dict) -> str:
    """Detection, pixels of the attacked seeds (mean / max), Pielou and where the failed attempts stopped."""
    if "defect_detection_rate" not in r:
        return " | | | |"
    pixels = r["pixels_modified"]
    by_count = sorted(r["failures"].items(), key=lambda kv: -kv[1])
    stops = ", ".join(f"{n}× {stage.split(' (')[0]}" for stage, n in by_count)
    return (f" {100 * r['defect_detection_rate']:.1f} % | "
            + ("-" if pixels is None else f"{pixels['mean']:.1f} / {pixels['max']:.0f} ({pixels['percent']:.2f} %)")
            + f" | {r['pielou']:.3f} | {stops or '-'} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=3)
    parser.add_argument("--budgets", default="0.3,0.5,0.8")
    parser.add_argument("--objective", default="pixels", choices=["pixels", "l1"])
    parser.add_argument("--time-limit", type=float, default=2.0)
    parser.add_argument("--train", action="store_true", help="rebuild examples/mnist_8_16.onnx first")
    parser.add_argument("--authors", type=Path, help="the authors' AttackMNIST/Models/mnist.h5")
    parser.add_argument("--ablation", type=float, help="instead: AIGENT's settings one by one at this budget")
    args = parser.parse_args()
    if args.train:
        rebuild()
    start = time.perf_counter()
    if args.ablation is not None:
        ablation(args)
        print(f"\nThis run: {time.perf_counter() - start:.0f} s")
        return
    print(HEADER + " detection | pixels of attacked seeds: mean / max (mean %) | Pielou | stopped at |")
    print("|---" * 12 + "|")
    with tempfile.TemporaryDirectory() as folder:
        for name, model, data in models(Path(folder), args.authors):
            for budget in (float(b) for b in args.budgets.split(",")):
                for method, extra in (("patch", {}), ("patch (paper)", PAPER), ("fgsm", None), ("pgd", None)):
                    options = None if extra is None else {"objective": args.objective, "time_limit": args.time_limit,
                                                          **extra}
                    r = run(model, data, method.split()[0], budget, args.samples, options=options)
                    print(f"| {name} | {budget} | {method} | {common_cells(r)} |{aigent_cells(r)}", flush=True)
    print(f"\nThis run: {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
