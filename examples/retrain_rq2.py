"""DeepSensor's RQ2 (§6.2, Figures 4–6) on MNIST: retrain a LeNet-5 with 500 benign images and 500 inputs of each
method (20 epochs, batches of 32, as the paper), then measure PGD's attack success rate before and after (ΔASR,
ε 0.3 as the paper's MNIST setting) and CLEVER before and after (ΔCLEVER; ART's clever_u, N_b and N_s far below
the paper's 500 and 1,024 on 2 cores); and PGD adversarial training (PGD-AT: 500 benign + 500 PGD inputs),
attacked by FGSM, DeepFool and PGD (ART's DeepFool; JSMA needs more time than 2 cores give). Our own comparison:
``--only suspicious`` (only the rows computing the suspicious neurons) against ``all``, for the methods that pick
neurons.

Net: ``lenet5`` of ``examples/faulty_mnist.py`` (run it first). Data: the benign images and the seeds are training
images 0–999 (500 benign, seeds drawn from the 1,000); held-out images 8,000–9,999 (``examples/mnist_sample.npz``)
measure accuracy, ASR and CLEVER.

    python examples/retrain_rq2.py [--faulty examples/faulty] [--methods deepsensor,deepfault,hs,fgsm,deephunter]
        [--clever 5]
"""
from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

import onnxfault

HERE = Path(__file__).resolve().parent
HELD_OUT = HERE / "mnist_sample.npz"
OPTIONS = {"deepsensor": {"distance": 0.3, "iterations": 20, "population": 100}, "deepfault": {"distance": 0.3},
           "hs": {"distance": 0.3}, "fgsm": {"distance": 0.3}, "pgd": {"distance": 0.3, "step": 0.03, "iterations": 10},
           "deephunter": {"iterations": 20}, "deepxplore": {"iterations": 20}, "dlfuzz": {}}
NEURONS = ("deepsensor", "deepfault", "hs")


def measured(model, clever: int) -> tuple[float, float, float]:
    """Held-out accuracy, PGD's success (ε 0.3) and the mean CLEVER of ``clever`` seeds."""
    found = onnxfault.robustness(model, HELD_OUT, samples=10, clever_seeds=clever, batches=5, batch_size=16,
                                 radius=0.3, attack_distance=0.3)
    accuracy = onnxfault.evaluate(model, HELD_OUT).accuracy
    return accuracy, found.attack_success_rate, found.clever_mean or 0.0


def attacks(model) -> str:
    """FGSM, DeepFool and PGD's success on 5 held-out seeds per class."""
    cells = []
    for method, extra in (("fgsm", {"distance": 0.3}), ("art:DeepFool", {}),
                          ("pgd", {"distance": 0.3, "step": 0.03, "iterations": 20})):
        cells.append(f"{100 * onnxfault.synthesize(model, HELD_OUT, method=method, samples=5, **extra).success_rate:.1f} %")
    return " / ".join(cells)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faulty", type=Path, default=HERE / "faulty")
    parser.add_argument("--methods", default="deepsensor,deepfault,hs,fgsm,deephunter,deepxplore,dlfuzz")
    parser.add_argument("--clever", type=int, default=5, help="seeds CLEVER is measured on")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    net = args.faulty / "lenet5.onnx"
    with np.load(args.faulty / "reference.npz") as data:
        benign, seeds = (data["x"][:500], data["y"][:500]), (data["x"], data["y"])
    began = time.perf_counter()
    accuracy, asr, clever = measured(net, args.clever)
    print(f"lenet5 before: held-out accuracy {100 * accuracy:.2f} %, PGD success {100 * asr:.1f} %, CLEVER {clever:.4f}; "
          f"FGSM / DeepFool / PGD {attacks(net)}\n")
    print("| retrained with | weights | inputs | held-out accuracy | PGD success (ΔASR) | CLEVER (ΔCLEVER) | "
          "FGSM / DeepFool / PGD success | values changed |")
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for method in ["pgd", *args.methods.split(",")]:
            run = onnxfault.synthesize(net, seeds, method=method, samples=50, seed=0, **OPTIONS[method])
            for only in (["all", "suspicious"] if method in NEURONS else ["all"]):
                adversarial = "pgd" if method == "pgd" else "none"
                result = onnxfault.retrain(net, benign, [run], only=only, adversarial=adversarial,
                                           pgd=(0.3, 10, 0.03), attack_samples=10)
                fixed = Path(folder) / f"{method}-{only}.onnx"
                result.save_model(fixed)
                acc, new_asr, new_clever = measured(fixed, args.clever)
                name = "PGD-AT" if method == "pgd" else method
                changed = sum(c["changed"] for c in result.changes)
                print(f"| {name} | {only} | {len(run.arrays['synthesized'])} | {100 * acc:.2f} % | "
                      f"{100 * new_asr:.1f} % ({100 * (asr - new_asr):+.1f}) | {new_clever:.4f} "
                      f"({new_clever - clever:+.4f}) | {attacks(fixed)} | {changed:,} |", flush=True)
    print(f"\nThis run: {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()
