"""Synthesis runtime and peak memory: HS-FGSM on a sub-model vs DeepFault, FGSM and PGD on the full model.

Run by hand (not in CI); results go to benchmarks/RESULTS.md:

    python benchmarks/synthesis.py [--sizes 100,1000,9000] [--nets dense_8x20,dense_10x100,mobilenet,squeezenet]
        [--runs "hs,hs ×5,fgsm,hs ×10 sign,pgd ×10,deepfault,deepfault 1×1"] [--per-input-max 1000]
        [--repeat 3] [--threads 1]

Nets: dense 8×20 and 10×100 ReLU MLPs on MNIST-sized inputs (1×28×28) and the MobileNetV3-Small-like and
SqueezeNet-like CNNs of examples/architectures.py on 3×32×32 inputs, all with random weights (torch's
default init, seed 0). Inputs are uniform random in [0, 1]. Torch runs ``--threads`` threads (default 1: on a
shared machine two threads wait on each other and times vary tenfold). Ten neurons of the middle candidate layer
(hs's default cut, index (n − 1) // 2) are the suspicious ones (``hs`` cuts there). Every (net, method,
size) runs in ``--repeat`` fresh processes (default 3), so each peak resident memory is one run's own; a
cell gives the fastest run's seconds of the method, the largest whole-process peak RSS (Python, torch,
onnxruntime, the model, the inputs and the method: what the process needs) and, in brackets, the largest
growth of the peak RSS during the method over the RSS just before it. Methods run in chunks of 256 inputs
(the default --batch-size), except "deepfault 1×1", which runs DeepFault on one input at a time, as the
paper's DeepFault baseline (DF@tf2) does; it runs once per cell, and on the CNNs only up to
``--per-input-max`` inputs. Runs:

* ``hs``: the paper's RQ2 setting (k 10, one gradient step x + ε·∇ with ε 1, no L∞ bound);
* ``hs ×5``: the paper's RQ1 setting (5 gradient steps of ε 1, no bound; k 10 here, 5 in the paper);
* ``fgsm``: one L∞ sign step of 0.1 on the full model;
* ``hs ×10 sign`` and ``pgd ×10``: 10 sign steps of 0.01 within L∞ 0.1, sub-model against full model;
* ``deepfault`` (batched) and ``deepfault 1×1`` (per input): DeepFault's defaults (step 1, L∞ 0.1, the
  normalised mean gradient, one backward pass per neuron).
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
# (label, method, settings, options, inputs per chunk)
RUNS = [("hs", "hs", dict(epsilon=1.0, iterations=1, distance=None), {"step_rule": "gradient"}, 256),
        ("hs ×5", "hs", dict(epsilon=1.0, iterations=5, distance=None), {"step_rule": "gradient"}, 256),
        ("fgsm", "fgsm", dict(distance=0.1), {}, 256),
        ("hs ×10 sign", "hs", dict(epsilon=0.01, iterations=10, distance=0.1), {"step_rule": "sign"}, 256),
        ("pgd ×10", "pgd", dict(step=0.01, iterations=10, distance=0.1), {}, 256),
        ("deepfault", "deepfault", dict(step=1.0, distance=0.1, iterations=1), {}, 256),
        ("deepfault 1×1", "deepfault", dict(step=1.0, distance=0.1, iterations=1), {}, 1)]


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


def one_run(model_path: str, shape: list[int], label: str, size: int, threads: int) -> dict:
    """Inside the child process: time one method on ``size`` random inputs with ``threads`` torch threads."""
    import torch

    torch.set_num_threads(threads)
    from onnxfault import load_model
    from onnxfault.adapters import gradients  # noqa: F401 - import torch before measuring
    from onnxfault.localization import SuspiciousNeuron
    from onnxfault.peak_memory import peak_rss_mb, peak_rss_reset
    from onnxfault.synthesis.running import run_in_chunks
    from onnxfault.synthesis.base import Problem
    from onnxfault.synthesis.hs import sub_model_layers
    from onnxfault.synthesis.methods import get_method

    model = load_model(model_path)
    cut = sub_model_layers(model, None, "auto")[0]
    layer = model.select_layers(cut)[0]
    neurons = [SuspiciousNeuron(i + 1, layer.tensor, i, 1.0, 0, 0, 0, 0) for i in range(min(10, layer.neurons()))]
    x = np.random.default_rng(0).random((size, *shape), dtype=np.float32)
    _, method, s, options, chunk = next(r for r in RUNS if r[0] == label)
    chosen = get_method(method)
    settings = chosen.make_options({**s, **options, **({"cut": cut} if method == "hs" else {})})
    problem = Problem(model, x, np.zeros(size, np.int64), neurons, {layer.tensor: layer}, "channel", None, (0.0, 1.0),
                      settings, "cpu")
    run = chosen.run
    warm_up = problem.rows(0, 2, cache={})
    run_in_chunks(run, warm_up, chunk)  # torch start-up; the timed run still builds its own module
    base = rss_mb()
    before = peak_rss_reset()
    start = time.perf_counter()
    run_in_chunks(run, problem, chunk)
    seconds, method_peak = time.perf_counter() - start, peak_rss_mb()
    return {"seconds": seconds, "process_peak_mb": max(before, method_peak), "method_growth_mb": method_peak - base,
            "cut": cut}


def child(path: Path, shape: tuple[int, ...], label: str, size: int, threads: int) -> dict:
    """``one_run`` in a fresh process."""
    out = subprocess.run([sys.executable, __file__, "--child", str(path), json.dumps(list(shape)), label, str(size),
                          str(threads)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000,9000")
    parser.add_argument("--nets", default="dense_8x20,dense_10x100,mobilenet,squeezenet")
    parser.add_argument("--runs", default=",".join(r[0] for r in RUNS), help="labels of the runs, comma-separated")
    parser.add_argument("--per-input-max", type=int, default=1000,
                        help="run the one-input-at-a-time DeepFault on the CNNs only up to this many inputs")
    parser.add_argument("--repeat", type=int, default=3,
                        help="fresh processes per cell: the fastest time and the largest peaks are shown "
                             "(the one-input-at-a-time DeepFault runs once)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads per run (1: stable times on a shared machine)")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        path, shape, method, size, threads = args.child
        print(json.dumps(one_run(path, json.loads(shape), method, int(size), int(threads))))
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"machine: {os.cpu_count()} cores; {args.threads} torch thread(s); sizes {sizes}; {args.repeat} processes "
          "per cell")
    print("| net | method | " + " | ".join(f"{n} inputs: s / peak MB (method Δ)" for n in sizes) + " |")
    print("|---|---|" + "---|" * len(sizes))
    with tempfile.TemporaryDirectory() as folder:
        for net in args.nets.split(","):
            path, shape = build(net, Path(folder))
            for label in args.runs.split(","):
                cells, cut = [], "?"
                for size in sizes:
                    if label.endswith("1×1") and not net.startswith("dense") and size > args.per_input_max:
                        cells.append("not run")
                        continue
                    repeat = 1 if label.endswith("1×1") else args.repeat
                    rs = [child(path, shape, label, size, args.threads) for _ in range(repeat)]
                    cut = rs[0]["cut"]
                    cells.append(f"{min(r['seconds'] for r in rs):.3f} / {max(r['process_peak_mb'] for r in rs):.0f} "
                                 f"({max(r['method_growth_mb'] for r in rs):.0f})")
                print(f"| {net} (cut {cut}) | {label} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
