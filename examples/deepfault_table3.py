"""DeepFault's Table 3 on its original MNIST models: accuracy and loss of the inputs DeepFault synthesizes
from 10 correctly classified inputs per class (step 1, L∞ d = 0.1), with the k ∈ {1, 2, 3, 5, 10} most
suspicious neurons by Tarantula, Ochiai and D*, against k random neurons.

Suspicious neurons of class C come from the spectrum of the MNIST *test* images of class C (the training
set the paper used is not available here). Lower accuracy and higher loss = more adversarial inputs; the
paper reports roughly 0.1–0.5 accuracy for T/O/D* against 0.5–0.9 for random neurons.

    python examples/deepfault_table3.py [--models ../shared/data/deepfault-models] [--mnist …/t10k-images-idx3-ubyte.gz]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from onnxfault import load_model, localize
from onnxfault.adapters import convert
from onnxfault.localization import samples_for, top_k
from onnxfault.loss import cross_entropy
from onnxfault.measures import score
from onnxfault.synthesis.base import Problem
from onnxfault.synthesis.methods import get_method
from onnxfault.synthesis.seeds import choose_seeds

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
MODELS = ["mnist_test_model_5_30_leaky_relu", "mnist_test_model_6_25_leaky_relu",
          "mnist_test_model_8_20_leaky_relu", "mnist_test_model_3_50_relu"]
MEASURES = ["tarantula", "ochiai", "dstar", "random"]
KS = [1, 2, 3, 5, 10]


def table_for(model_path: Path, mnist: Path) -> dict[tuple[str, int], tuple[float, float]]:
    """(measure, k) → (accuracy, loss) of the synthesized inputs over all 10 classes."""
    model = load_model(model_path)
    layers = {layer.tensor: layer for layer in model.layers}
    chosen = choose_seeds(model, samples_for(model, mnist), samples=10, seed=0)
    x, y = chosen.x, chosen.y
    deepfault = get_method("deepfault")
    session = model.session("cpu")
    synthesized = {(measure, k): np.empty_like(x) for measure in MEASURES for k in KS}
    for c in range(10):
        # one hit spectrum per class; every measure ranks the same counts
        spectrum = localize(model, samples_for(model, mnist, cls=c), k=1, cls=c).spectrum
        seeds = y == c
        for measure in MEASURES:
            ranked = top_k(spectrum, score(measure, spectrum.counts, seed=c), max(KS))
            for k in KS:
                problem = Problem(model, x[seeds], y[seeds], ranked[:k], layers, "channel", None, (0.0, 1.0),
                                  1.0, 0.1, 1, 0.0, None, "cpu")
                synthesized[measure, k][seeds] = deepfault.run(problem)
    results = {}
    for (measure, k), inputs in synthesized.items():
        scores = session.run(inputs)[0]
        results[measure, k] = (float((scores.argmax(1) == y).mean()), float(cross_entropy(scores, y, True).mean()))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=SHARED / "deepfault-models")
    parser.add_argument("--mnist", type=Path, default=SHARED / "mnist" / "t10k-images-idx3-ubyte.gz")
    args = parser.parse_args()
    start = time.perf_counter()
    print("| model | measure | " + " | ".join(f"k={k} acc / loss" for k in KS) + " |")
    print("|---|---|" + "---|" * len(KS))
    with tempfile.TemporaryDirectory() as folder:
        for name in MODELS:
            onnx_path = convert(args.models / f"{name}.json", Path(folder) / f"{name}.onnx").path
            results = table_for(Path(onnx_path), args.mnist)
            for measure in MEASURES:
                cells = " | ".join(f"{results[measure, k][0]:.2f} / {results[measure, k][1]:.2f}" for k in KS)
                print(f"| {name.replace('mnist_test_model_', '')} | {measure} | {cells} |")
    print(f"\npaper (DeepFault, Table 3): T/O/D* accuracy ≈ 0.1–0.5, random ≈ 0.5–0.9; "
          f"this run took {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
