"""Shared by aigent_mnist.py and deepsensor_mnist.py: run synthesis methods on one model at several L∞
budgets and print one markdown row per run."""
from __future__ import annotations

from pathlib import Path

from onnxfault.adapters import convert
from onnxfault.synthesis import synthesize

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def run(model: Path, data: Path, method: str, distance: float | None, samples: int, **kwargs) -> dict:
    """One synthesize run (seeds: ``samples`` correctly classified inputs per class, seed 0); its report."""
    extra = {"step": distance / 10, "iterations": 10} if method == "pgd" else {}
    return synthesize(model, data, method=method, samples=samples, distance=distance, clip_min=0.0, clip_max=1.0,
                      **extra, **kwargs).report


def common_cells(r: dict) -> str:
    d = r["distance"]
    return (f"{100 * r['success_rate']:.1f} % | {d['l0']['mean'] / 7.84:.2f} % | {d['l2']['mean']:.3f} | "
            f"{d['linf']['mean']:.3f} | {r['seconds'] / r['seeds']['count']:.3f}")


HEADER = "| model | L∞ d | method | success (seeds misclassified) | changed pixels (mean, % of 784) | L2 mean | L∞ mean | s / input |"


def models(folder: Path) -> list[tuple[str, Path, Path]]:
    """(name, ONNX model, seed data): the shipped dense ReLU model on its held-out sample, and DeepFault's
    3_50_relu model (converted into ``folder``) on the MNIST test set when ../shared/data is there."""
    found = [("mnist_dense", ROOT / "examples" / "mnist_dense.onnx", ROOT / "examples" / "mnist_sample.npz")]
    relu = SHARED / "deepfault-models" / "mnist_test_model_3_50_relu.json"
    if relu.is_file():
        found.append(("3_50_relu", Path(convert(relu, folder / "relu.onnx").path),
                      SHARED / "mnist" / "t10k-images-idx3-ubyte.gz"))
    return found
