"""Synthesis runtime and peak memory: HS-FGSM on a sub-model vs DeepFault, FGSM and PGD on the full model.

Run by hand (not in CI); results go to benchmarks/RESULTS.md:

    python benchmarks/synthesis.py [--sizes 100,1000,9000] [--nets dense_8x20,dense_10x100,mobilenet,squeezenet]

Nets: dense 8×20 and 10×100 ReLU MLPs on MNIST-sized inputs (1×28×28) and the MobileNetV3-Small-like and
SqueezeNet-like CNNs of examples/architectures.py on 3×32×32 inputs, all with random weights (torch's
default init, seed 0). Inputs are uniform random in [0, 1]. Ten neurons of the candidate layer at half
depth are the suspicious ones (``hs`` cuts there). Every (net, method, size) runs in a fresh process, so
its peak resident memory is its own: "peak MB" is the growth of the peak RSS over the process's RSS just
before the method starts. Methods run in chunks of 256 inputs (the default --batch-size). Runs, all with
L∞ d 0.1: hs with 1 sign step of 0.1 against FGSM (1 step on the full model), hs with 10 sign steps of
0.01 against PGD with 10 steps of 0.01, and DeepFault (step 1, one gradient through the full model).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# (label, method, settings): one-step hs against FGSM, ten-step hs against ten-step PGD
RUNS = [("hs ×1", "hs", dict(epsilon=0.1, iterations=1, distance=0.1)), ("fgsm", "fgsm", dict(distance=0.1)),
        ("hs ×10", "hs", dict(epsilon=0.01, iterations=10, distance=0.1)),
        ("pgd ×10", "pgd", dict(step=0.01, iterations=10, distance=0.1)),
        ("deepfault", "deepfault", dict(step=1.0, distance=0.1, iterations=1))]


def build(net: str, folder: Path) -> tuple[Path, tuple[int, ...]]:
    import torch
    from torch import nn

    from onnxfault.adapters import from_torch

    sys.path.insert(0, str(ROOT / "examples"))
    import architectures

    torch.manual_seed(0)
    if net.startswith("dense"):
        depth, width = (8, 20) if net == "dense_8x20" else (10, 100)
        layers, size = [nn.Flatten()], 784
        for _ in range(depth):
            layers += [nn.Linear(size, width), nn.ReLU()]
            size = width
        module, shape = nn.Sequential(*layers, nn.Linear(width, 10)), (1, 28, 28)
    else:
        module = architectures.mobilenet_v3_small_like() if net == "mobilenet" else architectures.squeezenet_like()
        shape = (3, 32, 32)
    return Path(from_torch(module.eval(), torch.rand(1, *shape), folder / f"{net}.onnx").path), shape


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) / 1024 for line in fh if line.startswith("VmRSS:"))


def one_run(model_path: str, shape: list[int], label: str, size: int) -> dict:
    """Inside the child process: time one method on ``size`` random inputs."""
    from onnxfault import load_model
    from onnxfault.adapters import gradients  # noqa: F401 - import torch before measuring
    from onnxfault.localization import SuspiciousNeuron
    from onnxfault.synthesis import _peak_rss_mb, _peak_rss_reset, run_in_chunks
    from onnxfault.synthesis.base import Problem
    from onnxfault.synthesis.methods import get_method

    model = load_model(model_path)
    layer = model.layers[len(model.layers) // 2]
    neurons = [SuspiciousNeuron(i + 1, layer.tensor, i, 1.0, 0, 0, 0, 0) for i in range(min(10, layer.neurons()))]
    x = np.random.default_rng(0).random((size, *shape), dtype=np.float32)
    _, method, s = next(r for r in RUNS if r[0] == label)
    problem = Problem(model, x, np.zeros(size, np.int64), neurons, {layer.tensor: layer}, "channel", None, (0.0, 1.0),
                      s.get("step", 0.0), s["distance"], s.get("iterations", 1), s.get("epsilon", 0.0), None, "cpu")
    run = get_method(method).run
    warm_up = Problem(**{**problem.__dict__, "x": x[:2], "y": problem.y[:2], "extra": {}, "cache": {}})
    run_in_chunks(run, warm_up, 256)  # torch start-up; the timed run still builds its own module
    base = rss_mb()
    _peak_rss_reset()
    start = time.perf_counter()
    run_in_chunks(run, problem, 256)
    return {"seconds": time.perf_counter() - start, "peak_mb": _peak_rss_mb() - base, "cut": layer.tensor}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000,9000")
    parser.add_argument("--nets", default="dense_8x20,dense_10x100,mobilenet,squeezenet")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        path, shape, method, size = args.child
        print(json.dumps(one_run(path, json.loads(shape), method, int(size))))
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"machine: {os.cpu_count()} cores; torch threads default; sizes {sizes}")
    print("| net | method | " + " | ".join(f"{n} inputs s / peak MB" for n in sizes) + " |")
    print("|---|---|" + "---|" * len(sizes))
    with tempfile.TemporaryDirectory() as folder:
        for net in args.nets.split(","):
            path, shape = build(net, Path(folder))
            for label, _, _ in RUNS:
                cells = []
                for size in sizes:
                    out = subprocess.run([sys.executable, __file__, "--child", str(path), json.dumps(list(shape)),
                                          label, str(size)], capture_output=True, text=True, check=True)
                    r = json.loads(out.stdout.strip().splitlines()[-1])
                    cells.append(f"{r['seconds']:.2f} / {r['peak_mb']:.0f}")
                print(f"| {net} (cut {r['cut']}) | {label} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
