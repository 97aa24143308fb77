"""FGSM through the ONNX→torch adapter against plain torch on the source module.

Run by hand (not in CI); results go to benchmarks/RESULTS.md:

    python benchmarks/adapter_speed.py [--nets resnet,vit] [--batch 256] [--rounds 7]

For each net of examples/architectures.py (random weights, seed 0) exported to ONNX (opset 17): one FGSM step
(cross-entropy gradient with respect to the input, sign step of 0.1, clip to [0, 1]) on the same batch of
3×32×32 inputs, once through onnxfault's path (`Differentiable.loss_gradient`, the converted module, as the
`fgsm` method runs it) and once on the source torch module. The two run in turn, round by round, in an order
that alternates; the table gives the median and best of the rounds and the ratio of medians. Both compute
input gradients only (the source module's parameters are frozen, like the adapter's buffers). The exported
graph has BatchNorm folded into the convolutions by torch's exporter, the source module does not. The
one-off conversion (ONNX → torch module) is timed separately. The two results are checked to agree.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))

import architectures  # noqa: E402


def plain_fgsm(module, x: np.ndarray, y: np.ndarray, distance: float) -> np.ndarray:
    xt = torch.from_numpy(x).requires_grad_(True)
    scores = module(xt).to(torch.float64)
    torch.nn.functional.cross_entropy(scores, torch.from_numpy(y), reduction="sum").backward()
    return np.clip(x + distance * np.sign(xt.grad.numpy()), 0, 1).astype(np.float32)


def adapter_fgsm(differentiable, x: np.ndarray, y: np.ndarray, distance: float) -> np.ndarray:
    grad, _ = differentiable.loss_gradient(x, y)
    return np.clip(x + distance * np.sign(grad), 0, 1).astype(np.float32)


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def bench(net: str, batch: int, rounds: int, folder: Path) -> dict:
    from onnxfault import load_model
    from onnxfault.adapters import from_torch
    from onnxfault.adapters.gradients import Differentiable

    torch.manual_seed(0)
    module = architectures.ARCHITECTURES[net]().eval()
    for parameter in module.parameters():  # input gradients only, as the adapter's frozen buffers
        parameter.requires_grad_(False)
    model = load_model(from_torch(module, torch.rand(1, 3, 32, 32), folder / f"{net}.onnx").path)
    convert_s, differentiable = timed(lambda: Differentiable(model.scores_only(), "cpu"))
    rng = np.random.default_rng(0)
    x = rng.random((batch, 3, 32, 32), dtype=np.float32)
    y = rng.integers(0, 10, batch)
    runs = {"adapter": lambda: adapter_fgsm(differentiable, x, y, 0.1), "plain": lambda: plain_fgsm(module, x, y, 0.1)}
    for fn in runs.values():  # warm up both
        fn()
    times: dict[str, list[float]] = {name: [] for name in runs}
    outputs = {}
    for r in range(rounds):
        for name in (runs if r % 2 == 0 else reversed(list(runs))):
            seconds, outputs[name] = timed(runs[name])
            times[name].append(seconds)
    agree = float(np.isclose(outputs["adapter"], outputs["plain"], atol=1e-6).mean())
    return {"net": net, "convert_s": convert_s, "agree": agree,
            **{f"{n}_median": statistics.median(t) for n, t in times.items()},
            **{f"{n}_best": min(t) for n, t in times.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nets", default="resnet,vit")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, {args.rounds} rounds")
    print("| net | adapter median s | plain median s | ratio (medians) | adapter best s | plain best s | "
          "conversion s | elements equal |")
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for net in args.nets.split(","):
            r = bench(net, args.batch, args.rounds, Path(tmp))
            print(f"| {net} | {r['adapter_median']:.3f} | {r['plain_median']:.3f} | "
                  f"{r['adapter_median'] / r['plain_median']:.2f}× | {r['adapter_best']:.3f} | {r['plain_best']:.3f} | "
                  f"{r['convert_s']:.3f} | {100 * r['agree']:.2f} % |")


if __name__ == "__main__":
    main()
