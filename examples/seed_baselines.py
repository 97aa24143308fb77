"""The seed papers' comparisons with their baselines, on MNIST: DeepSensor's RQ1 (its Tables 3, 4 and 5) and
AIGENT's Table I, plus the coverage each method's inputs reach.

Nets: those of ``examples/faulty_mnist.py`` (run it first; ``--faulty`` names its folder): LeNet-1/4/5, LeNet-5
trained on polluted data (α = 1, 5, 10 %) and trained too little or too long; and the shipped
``examples/mnist_8_16.onnx`` (AIGENT's 784-8-16-10 net). Seeds: ``--samples`` correctly classified held-out
images per class (``examples/mnist_sample.npz``, images 8,000–9,999), seed 0.

Tables (``--tables``):

- ``rq1`` (Table 3, well-trained LeNets): per method the seeds whose kept input is misclassified, the method's
  own count of misclassified inputs it made on the way (DeepSensor's particles, DeepHunter's mutants; DLFuzz: the
  seeds with an adversarial mutation), error categories (distinct (seed, wrong class) pairs; a method that keeps
  one input per seed has at most one per seed) per seed, L2 / L∞, seconds per seed, and the coverage the inputs
  add to their seeds': NC(0), KMNC(1,000), NBC, SNAC and TKNC(1), neuron boundaries from training images
  0–999 (``--reference``, as DeepSensor §5.3's 1,000 examples).
- ``rq3`` (Tables 4 and 5): the same methods on the polluted and the under/over-trained LeNet-5: errors among
  the kept inputs (one per seed; the paper generates 1,000 inputs and counts the errors) and, for the polluted
  nets, how many of them the net calls the polluted class 1.
- ``aigent`` (Table I, MNIST): AIGENT (``patch``, L∞ 0.8: "AIGENT (high defect)"), FGSM (0.1), ART's AutoAttack
  (0.3) and HopSkipJump (a decision-based black-box attack, L∞; ART's SquareAttack needs images and this net
  takes 784 values), DeepXplore (``light``: its other constraints need an image) and DLFuzz on ``mnist_8_16``: success, changed pixels, L2, L∞, seconds per
  input, Pielou evenness of the adversarial classes. FID needs a feature network (issue 25).

Settings: DeepSensor §5's where it gives one (20 iterations; DeepXplore "blackout", guided by NC; DLFuzz with
neuron_to_cover_num 10 and k = 4; DeepHunter on SNAC, boundaries from 1,000 examples; DeepSensor's population
100) and each method's defaults otherwise (DLFuzz keeps its authors' 3 iterations per queued input: 20 makes its
queue run for minutes per seed). Methods that take an L∞ bound get ``--distance`` (0.3, the ε of DeepSensor's
RQ2 on MNIST); DeepXplore, DLFuzz and DeepHunter bound their changes their own way.

    python examples/seed_baselines.py [--faulty examples/faulty] [--samples 5] [--tables rq1,rq3,aigent]
        [--methods deepxplore,dlfuzz,deephunter,deepsensor,deepfault,hs] [--distance 0.3]
"""
from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

import onnxfault
from onnxfault.synthesis import synthesize
from onnxfault.synthesis.patch import pielou

HERE = Path(__file__).resolve().parent
SEEDS = HERE / "mnist_sample.npz"
GENERATORS = ("deepxplore", "dlfuzz", "deephunter", "deepsensor", "deepfault", "hs")
# AIGENT's Table I rows on MNIST, the L∞ bound each ran at (AIGENT (high defect) 0.8, FGSM 0.1, AutoAttack 0.3)
# and other options: the net takes 784 values, so DeepXplore's constraint is the one that needs no image
AIGENT = (("patch", 0.8, {}), ("fgsm", 0.1, {}), ("art:AutoAttack", 0.3, {}), ("art:HopSkipJump", None, {}),
          ("deepxplore", None, {"constraint": "light"}), ("dlfuzz", None, {}))
CRITERIA = ("nc", "kmnc", "nbc", "snac", "tknc")


def options(method: str, distance: float) -> dict:
    """DeepSensor §5's settings where it gives them, the method's defaults otherwise."""
    bounded = {"distance": distance}
    return {"deepxplore": {"iterations": 20}, "dlfuzz": {}, "deephunter": {"iterations": 20},
            "deepsensor": {**bounded, "iterations": 20, "population": 100}, "deepfault": bounded, "hs": bounded,
            "fgsm": bounded, "patch": {**bounded, "time_limit": 2.0},
            "art:AutoAttack": {"art_param": f"eps={distance}"},
            "art:HopSkipJump": {"art_param": "norm=inf,max_iter=20,max_eval=1000,init_eval=100"}}[method]


def run(model: Path, method: str, samples: int, distance: float | None, folder: Path, **extra):
    """One synthesize run, saved to ``folder`` (for the coverage of its inputs); its result."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = synthesize(model, SEEDS, method=method, samples=samples, seed=0, clip_min=0.0, clip_max=1.0,
                            **{**options(method, distance), **extra})
    result.save(folder)
    return result


def own_errors(r: dict) -> str:
    if "test_errors" in r:
        return f"{r['test_errors']:,}"
    return f"{r['adversarial_seeds']} seeds" if "adversarial_seeds" in r else "—"


def categories(r: dict, seeds: int, wrong: int) -> float:
    return r["error_categories"] / seeds if "error_categories" in r else wrong / seeds


def coverage_cells(model: Path, folder: Path, reference: Path) -> str:
    """Each criterion's coverage of the seeds → seeds and inputs together, in %."""
    with np.load(folder / "inputs.npz") as arrays:
        seeds = (arrays["original"], arrays["labels"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        found = onnxfault.coverage(model, seeds, reference=reference, inputs=folder, sections=1000)
    return " | ".join(f"{100 * found.ratio(c):.1f} → {100 * found.ratio(c, with_inputs=True):.1f}" for c in CRITERIA)


def rq1(nets: Path, samples: int, distance: float, work: Path, methods: tuple[str, ...]) -> None:
    print("\n### RQ1: finding adversarial inputs (DeepSensor Table 3), with the coverage they add\n")
    print("| net | method | seeds | kept inputs misclassified | misclassified on the way | categories / seed | "
          "L2 mean | L∞ mean | s / seed | " + " | ".join(f"{c.upper()} seeds → +inputs (%)" for c in CRITERIA) + " |")
    print("|---" * (9 + len(CRITERIA)) + "|")
    for net in ("lenet1", "lenet4", "lenet5"):
        for method in methods:
            folder = work / f"{net}-{method}"
            r = run(nets / f"{net}.onnx", method, samples, distance, folder).report
            seeds, d = r["seeds"]["count"], r["distance"]
            wrong = int(round(r["success_rate"] * seeds))
            print(f"| {net} | {method} | {seeds} | {wrong} | {own_errors(r)} | {categories(r, seeds, wrong):.2f} | "
                  f"{d['l2']['mean']:.3f} | {d['linf']['mean']:.3f} | {r['seconds'] / seeds:.3f} | "
                  f"{coverage_cells(nets / f'{net}.onnx', folder, nets / 'reference.npz')} |", flush=True)


def rq3(nets: Path, samples: int, distance: float, work: Path, methods: tuple[str, ...]) -> None:
    print("\n### RQ1 on faulty training (DeepSensor Tables 4 and 5): errors among the kept inputs\n")
    names = ("lenet5_polluted_1", "lenet5_polluted_5", "lenet5_polluted_10", "lenet5_underfit", "lenet5",
             "lenet5_overfit")
    print("| net | seeds | " + " | ".join(methods) + " |")
    print("|---" * (2 + len(methods)) + "|")
    for net in names:
        cells, seeds = [], 0
        for method in methods:
            result = run(nets / f"{net}.onnx", method, samples, distance, work / f"{net}-{method}")
            after, before = result.arrays["predictions_after"], result.arrays["labels"]
            seeds = len(before)
            wrong = after != before
            polluted = f" ({int((after[wrong] == 1).sum())} as 1)" if "polluted" in net else ""
            cells.append(f"{int(wrong.sum())}{polluted} · {own_errors(result.report)}")
        print(f"| {net} | {seeds} | " + " | ".join(cells) + " |", flush=True)


def aigent(samples: int, work: Path) -> None:
    print("\n### AIGENT Table I (MNIST)\n")
    print("| method | L∞ bound | success | changed pixels (mean, % of 784) | L2 mean | L∞ mean | s / input | Pielou |")
    print("|---|---|---|---|---|---|---|---|")
    for method, distance, extra in AIGENT:
        result = run(HERE / "mnist_8_16.onnx", method, samples, distance, work / f"aigent-{method}", **extra)
        r = result.report
        after, before = result.arrays["predictions_after"], result.arrays["labels"]
        d, seeds = r["distance"], r["seeds"]["count"]
        print(f"| {method} | {'—' if distance is None else distance} | {100 * r['success_rate']:.1f} % | {d['l0']['mean'] / 7.84:.2f} % | "
              f"{d['l2']['mean']:.3f} | {d['linf']['mean']:.3f} | {r['seconds'] / seeds:.3f} | "
              f"{pielou(after[after != before].tolist(), 10):.3f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faulty", type=Path, default=HERE / "faulty", help="examples/faulty_mnist.py's --out")
    parser.add_argument("--samples", type=int, default=5, help="seeds per class")
    parser.add_argument("--distance", type=float, default=0.3, help="L∞ bound of the methods that take one")
    parser.add_argument("--tables", default="rq1,rq3,aigent")
    parser.add_argument("--methods", default=",".join(GENERATORS), help="rq1 and rq3: the methods to run")
    args = parser.parse_args()
    tables = args.tables.split(",")
    if {"rq1", "rq3"} & set(tables) and not (args.faulty / "reference.npz").is_file():
        raise SystemExit(f"error: {args.faulty} has no nets; run `python examples/faulty_mnist.py --out {args.faulty}`")
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        if "rq1" in tables:
            rq1(args.faulty, args.samples, args.distance, work, tuple(args.methods.split(",")))
        if "rq3" in tables:
            rq3(args.faulty, args.samples, args.distance, work, tuple(args.methods.split(",")))
        if "aigent" in tables:
            aigent(args.samples, work)
    print(f"\nThis run: {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()
