"""DeepSensor (--method deepsensor) on dense ReLU MNIST models, next to FGSM and PGD at the same L∞ budget.

Models and seeds as in aigent_mnist.py. DeepSensor's own numbers: test errors (misclassified examples
among all the particles it evaluated), error categories (distinct (seed, wrong class) pairs) and
categories per seed; "success" is the share of seeds whose final (best-fitness) input is misclassified.

    python examples/deepsensor_mnist.py [--samples 3] [--budgets 0.1,0.3] [--population 100] [--iterations 20]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from method_table import HEADER, common_cells, models, run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=3)
    parser.add_argument("--budgets", default="0.1,0.3")
    parser.add_argument("--population", type=int, default=100)
    parser.add_argument("--iterations", type=int, default=20)
    args = parser.parse_args()
    start = time.perf_counter()
    print(HEADER + " excitable | test errors / examples | categories (per seed) | seeds with errors |")
    print("|---" * 12 + "|")
    with tempfile.TemporaryDirectory() as folder:
        for name, model, data in models(Path(folder)):
            for budget in (float(b) for b in args.budgets.split(",")):
                for method in ("deepsensor", "fgsm", "pgd"):
                    kwargs = {"options": {"population": args.population}, "iterations": args.iterations} \
                        if method == "deepsensor" else {}
                    r = run(model, data, method, budget, args.samples, **kwargs)
                    own = " | | | |"
                    if method == "deepsensor":
                        own = (f" {len(r['neurons'])} | {r['test_errors']} / {r['examples_evaluated']} | "
                               f"{r['error_categories']} ({r['categories_per_seed']:.2f}) | "
                               f"{r['seeds_with_errors']} / {r['seeds']['count']} |")
                    print(f"| {name} | {budget} | {method} | {common_cells(r)} |{own}", flush=True)
    print(f"\nThis run: {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
