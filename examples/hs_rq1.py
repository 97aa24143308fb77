"""HS-FGSM's RQ1 (Rashedi & Schupp, section 5.1, Tables 4-5) on MNIST-sized MobileNetV3-Small-like and
SqueezeNet-like nets, with FGSM and DeepFault (batched and one input at a time) beside it for RQ2's ratios.

Nets: ``mobilenet_v3_small_like`` and ``squeezenet_like`` of examples/architectures.py with a 1-channel first
convolution (1×28×28 input), trained briefly (``--epochs``, default 5 as the paper's models; Adam, lr 1e-3, batch
64, seed 0) on MNIST test images 0..7,999, split as examples/train_mnist.py does; the held-out images
8,000..9,999 (``examples/mnist_sample.npz``) give the spectrum and the seeds: every correctly classified held-out
image not of class 0.

RQ1's settings: target t = 0, k = 5, Ochiai, 5 iterations, ε = 1, gradient steps x + ε·∇, no L∞ bound. Cuts, as
Table 4: "A"/"C" the first candidate layer (the paper: the first convolution), "B"/"D" the candidate layer whose
sub-model's share of the parameters is closest to the paper's (36.41 % MobileNet, 41.18 % SqueezeNet), and
onnxfault's default cut (the middle candidate layer). Neurons from ``--target 0`` (predicted as 0, over all held-out
images: what the authors' code counts) and from ``--class 0`` (Algorithm 1 as printed: images of class 0, fail =
misclassified). Every run is a fresh ``onnxfault`` process (``--threads`` torch threads, default 1), so
``peak_memory_mb`` is that run's own.

    python examples/hs_rq1.py [--epochs 5] [--granularity channel] [--work /tmp/hs_rq1]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import architectures  # noqa: E402
from train_mnist import TRAIN, load_mnist, train  # noqa: E402

SAMPLE = HERE / "mnist_sample.npz"  # MNIST test images 8,000..9,999
# Table 4 (sub-model share of the parameters) and Table 5 (t-Pred., seconds): cut → (share, t-pred, time)
PAPER = {"mobilenet": {"A": (0.02, 6.70, 12.32), "B": (36.41, 60.22, 28.50)},
         "squeezenet": {"C": (0.15, 6.25, 22.31), "D": (41.18, 22.90, 30.25)}}
BUILDERS = {"mobilenet": architectures.mobilenet_v3_small_like, "squeezenet": architectures.squeezenet_like}


def one_channel(module: nn.Sequential) -> nn.Sequential:
    """The builder's net with its first convolution taking 1 channel (MNIST) instead of 3."""
    first = module[0]
    module[0] = nn.Conv2d(1, first.out_channels, first.kernel_size, first.stride, first.padding,
                          bias=first.bias is not None)
    return module


def build(name: str, epochs: int, folder: Path, mnist: Path) -> tuple[Path, float]:
    """Train the net on images 0..7,999 and export it (kept in ``folder`` for the next run); returns the ONNX
    path and the held-out accuracy."""
    from onnxfault.adapters import from_torch

    path, info = folder / f"{name}_mnist_{epochs}ep.onnx", folder / f"{name}_mnist_{epochs}ep.json"
    if path.exists() and info.exists():
        return path, json.loads(info.read_text())["accuracy"]
    torch.manual_seed(0)
    images, labels = load_mnist(mnist)
    x = torch.from_numpy(images[:, None].astype(np.float32) / 255.0)
    y = torch.from_numpy(labels).long()
    net = train(one_channel(BUILDERS[name]()), x[:TRAIN], y[:TRAIN], epochs)
    with torch.no_grad():
        accuracy = (net(x[TRAIN:]).argmax(1) == y[TRAIN:]).float().mean().item()
    from_torch(net, x[:1], path)
    info.write_text(json.dumps({"accuracy": accuracy}))
    return path, accuracy


def parameter_share(proto: onnx.ModelProto, tensor: str) -> float:
    """Share (%) of the model's parameters (initializer elements) in the sub-model that ends at ``tensor``."""
    from onnxfault import graph

    def count(model: onnx.ModelProto) -> int:
        return sum(int(np.prod(numpy_helper.to_array(i).shape)) for i in model.graph.initializer)

    return 100.0 * count(graph.cut_at(proto, [tensor])) / count(proto)


def cuts(path: Path, name: str) -> dict[str, tuple[str, float]]:
    """Label → (tensor, parameter share %): the paper's two cuts and onnxfault's default."""
    from onnxfault import load_model
    from onnxfault.synthesis.hs import sub_model_layers

    model = load_model(path)
    shares = {layer.tensor: parameter_share(model.proto, layer.tensor) for layer in model.layers}
    small, large = PAPER[name]
    tensors = list(shares)
    near = min(tensors, key=lambda t: abs(shares[t] - PAPER[name][large][0]))
    default = sub_model_layers(model, None, "auto")[0]
    return {small: (tensors[0], shares[tensors[0]]), large: (near, shares[near]),
            "default": (default, shares[default])}


THREADS = {"OMP_NUM_THREADS": "1"}  # torch's threads in the runs; --threads sets it


def onnxfault(*args) -> float:
    """One fresh ``onnxfault`` process (the CLI); its wall time."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "onnxfault.cli", *map(str, args), "-q"], check=True,
                   env={**os.environ, **THREADS})
    return time.perf_counter() - start


def synthesize(*args, out: Path) -> dict:
    """``onnxfault synthesize … --out out`` in a fresh process: its report.json and the process's wall time."""
    wall = onnxfault("synthesize", *args, "--out", out)
    return {**json.loads((out / "report.json").read_text()), "wall": wall}


def runs_for(path: Path, name: str, granularity: str, work: Path) -> list[tuple[str, str, float, dict]]:
    """(label, cut, share, report) of every run on one net."""
    common = ["--data", SAMPLE, "--samples", "10000"]
    ranked = ["--granularity", granularity]  # runs that rank neurons (with --neurons, the file's granularity holds)
    rq1 = ["--method", "hs", "--iterations", "5", "--epsilon", "1", "--step-rule", "gradient", "--distance", "none"]
    rows = []
    for label, (tensor, share) in cuts(path, name).items():
        rows.append((f"hs {label}, --target 0", tensor, share,
                     synthesize(path, *common, *ranked, *rq1, "-k", "5", "--target", "0", "--cut", tensor,
                                out=work / f"{name}-hs-{label}-target")))
        if label == "default":
            continue
        ranking = work / f"{name}-{label}-class0.json"
        onnxfault("localize", path, "--data", SAMPLE, "--class", "0", "--layers", tensor, "-k", "5", "--granularity",
                  granularity, "--json", ranking)
        rows.append((f"hs {label}, --class 0 neurons", tensor, share,
                     synthesize(path, *common, *rq1, "--target", "0", "--cut", tensor, "--neurons", ranking,
                                out=work / f"{name}-hs-{label}-class")))
    baselines = (("fgsm d 0.3", ["--method", "fgsm", "--distance", "0.3"]),
                 ("deepfault k 5", ["--method", "deepfault", "-k", "5", *ranked]),
                 ("deepfault k 5, 1 input at a time", ["--method", "deepfault", "-k", "5", *ranked, "--batch-size",
                                                       "1"]))
    for label, extra in baselines:
        out = work / f"{name}-{label.replace(' ', '_').replace(',', '')}"
        rows.append((label, "-", 100.0, synthesize(path, *common, *extra, "--target", "0", out=out)))
    return rows


def row(name: str, label: str, tensor: str, share: float, r: dict) -> str:
    """One Markdown row: ours, and the paper's Tables 4-5 beside the --target runs at its cuts."""
    paper = PAPER[name].get(label.split(",")[0].removeprefix("hs "))
    beside = f"{paper[0]:.2f} % / {paper[1]:.2f} % / {paper[2]:.2f}" if paper and "target" in label else ""
    d = r["distance"]
    return (f"| {name} | {label} | {tensor} ({share:.2f} %) | {100 * r['target_rate']:.2f} % | "
            f"{100 * r['success_rate']:.2f} % | {d['linf']['mean']:.3f} | {d['l2']['mean']:.2f} | {r['seconds']:.2f} | "
            f"{r['wall']:.1f} | {r['peak_memory_mb']:.0f} ({r['method_peak_memory_mb']:.0f}) | {beside} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mnist", type=Path, default=HERE.parent.parent / "shared" / "data" / "mnist")
    parser.add_argument("--epochs", type=int, default=5, help="training epochs (the paper: 5)")
    parser.add_argument("--granularity", default="channel",
                        help="channel (onnxfault's default) | element (the authors' code)")
    parser.add_argument("--nets", default="mobilenet,squeezenet")
    parser.add_argument("--work", type=Path, default=Path("/tmp/hs_rq1"))
    parser.add_argument("--threads", default="1",
                        help="torch threads of each run (1: stable times on a shared machine)")
    args = parser.parse_args()
    THREADS["OMP_NUM_THREADS"] = args.threads
    args.work.mkdir(parents=True, exist_ok=True)
    print(f"torch threads per run {args.threads}; granularity {args.granularity}; epochs {args.epochs}")
    print("| net | run | cut (params %) | t-pred | success | L∞ mean | L2 mean | method s | process s | peak MB "
          "(method) | paper: params % / t-pred / s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name in args.nets.split(","):
        path, accuracy = build(name, args.epochs, args.work, args.mnist)
        print(f"| {name}-like, held-out accuracy {100 * accuracy:.2f} % |||||||||||", flush=True)
        for label, tensor, share, r in runs_for(path, name, args.granularity, args.work):
            print(row(name, label, tensor, share, r), flush=True)
        print(f"seeds: {r['seeds']['count']} correctly classified held-out images not of class 0", flush=True)


if __name__ == "__main__":
    main()
