"""DeepSensor (--method deepsensor) on the shipped MNIST models, next to FGSM and PGD at the same L∞ budget.

Models: the shipped ``mnist_dense.onnx`` and ``mnist_lenet.onnx`` (seeds from the held-out
``mnist_sample.npz``) and DeepFault's 3_50_relu model (seeds from the MNIST test set) when
../shared/data is there. DeepSensor's own numbers: test errors (misclassified examples among all the
particles it evaluated), best-particle errors (one example per seed and iteration, the swarm's best:
the scale of the paper's Table 3, at most seeds × iterations), error categories (distinct (seed, wrong
class) pairs) and categories per seed (Table 3's "#Average categories"); "success" is the share of seeds
whose final (best-fitness) input is misclassified. The paper bounds no perturbation: a budget of 1 is
the whole [0, 1] range.

    python examples/deepsensor_mnist.py [--samples 3] [--budgets 0.1,0.3,1] [--population 100]
        [--iterations 20] [--inertia 0.4,0.9] [--methods deepsensor,fgsm,pgd] [--models mnist_dense,...]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from method_table import HEADER, ROOT, common_cells, models, run


def own_cells(r: dict, iterations: int) -> str:
    """DeepSensor's columns of one run."""
    seeds = r["seeds"]["count"]
    return (f" {len(r['neurons'])} / {r['neurons_total']} | {r['test_errors']} / {r['examples_evaluated']} | "
            f"{r['best_errors']} / {seeds * iterations} | {r['error_categories']} ({r['categories_per_seed']:.2f}) | "
            f"{r['seeds_with_errors']} / {seeds} | {r['mean_best_fitness']:.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=3, help="seeds per class")
    parser.add_argument("--budgets", default="0.1,0.3,1", help="L∞ budgets (1 = no bound on [0, 1] data)")
    parser.add_argument("--population", type=int, default=100)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--inertia", default="0.4,0.9", help="ω start,end (Eq. 7)")
    parser.add_argument("--methods", default="deepsensor,fgsm,pgd")
    parser.add_argument("--models", default="mnist_dense,mnist_lenet,3_50_relu")
    args = parser.parse_args()
    start = time.perf_counter()
    print(HEADER + " excitable / neurons | test errors / examples | best-particle errors / (seed·iteration) | "
          "categories (per seed) | seeds with errors | mean best fitness |")
    print("|---" * 14 + "|")
    with tempfile.TemporaryDirectory() as folder:
        found = models(Path(folder))
        found.insert(1, ("mnist_lenet", ROOT / "examples" / "mnist_lenet.onnx", ROOT / "examples" / "mnist_sample.npz"))
        for name, model, data in (m for m in found if m[0] in args.models.split(",")):
            for budget in (float(b) for b in args.budgets.split(",")):
                for method in args.methods.split(","):
                    kwargs = {"options": {"population": args.population, "inertia": args.inertia},
                              "iterations": args.iterations} if method == "deepsensor" else {}
                    r = run(model, data, method, budget, args.samples, **kwargs)
                    own = own_cells(r, args.iterations) if method == "deepsensor" else " | | | | | |"
                    print(f"| {name} | {budget:g} | {method} | {common_cells(r)} |{own}", flush=True)
    print(f"\nThis run: {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
