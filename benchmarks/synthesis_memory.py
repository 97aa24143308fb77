"""Synthesis memory: the whole process's peak against the method's own, at 9,000 seeds on LeNet-5.

Run by hand (not in CI); results go to benchmarks/RESULTS.md:

    python benchmarks/synthesis_memory.py --data /work/shared/data/mnist/t10k-images-idx3-ubyte.gz
        [--methods fgsm,deepfault,hs] [--samples 900] [--rounds 3] [--before /tmp/of-base]

Each run is ``onnxfault synthesize examples/mnist_lenet.onnx --data DATA --method M --samples 900`` (900 seeds per
class of the MNIST test set: 8,983 seeds, two classes have fewer correctly classified images) in a fresh process
under ``/usr/bin/time -v``, from a temporary folder. ``--before PATH`` also runs the code at PATH (a checkout of an
earlier version, put first on PYTHONPATH), interleaved with this one round by round, so both see the same load.
A row gives the fastest round's ``seconds`` (the method alone) and wall time, and the largest round's
``peak_memory_mb`` and ``method_peak_memory_mb`` of ``report.json`` and maximum resident set size of
``/usr/bin/time`` (MB = 2^20 bytes), and the ratio of the process peak to the method's peak.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def one_run(code: str | None, method: str, data: str, samples: int, folder: Path) -> dict:
    """``synthesize`` in a fresh process with ``code`` first on PYTHONPATH (None: the installed onnxfault)."""
    out = folder / f"{method}-{'before' if code else 'after'}"
    env = {**os.environ, "PYTHONPATH": code} if code else {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    command = ["/usr/bin/time", "-v", sys.executable, "-m", "onnxfault.cli", "synthesize",
               str(ROOT / "examples" / "mnist_lenet.onnx"), "--data", data, "--method", method, "--samples",
               str(samples), "--out", str(out), "-q"]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"{method} ({code or 'this checkout'}) failed:\n{done.stderr[-2000:]}")
    report = json.loads((out / "report.json").read_text())
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr).group(1)) / 1024
    return {"seeds": report["seeds"]["count"], "seconds": report["seconds"], "wall": wall,
            "peak": report["peak_memory_mb"], "method_peak": report["method_peak_memory_mb"], "rss": rss}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="the MNIST test set (IDX images; labels beside them)")
    parser.add_argument("--methods", default="fgsm,deepfault,hs")
    parser.add_argument("--samples", type=int, default=900, help="seeds per class")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--before", help="a checkout of an earlier version to compare with (put on PYTHONPATH)")
    args = parser.parse_args()
    codes = [args.before, None] if args.before else [None]
    runs: dict[tuple, list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.rounds):
            for method in args.methods.split(","):
                for code in codes:
                    row = one_run(code, method, args.data, args.samples, Path(tmp))
                    runs.setdefault((method, code), []).append(row)
    print("| method | code | seeds | method s | wall s | `peak_memory_mb` | `method_peak_memory_mb` "
          "| peak / method peak | max RSS (`time -v`) MB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for (method, code), rows in runs.items():
        peak, method_peak = max(r["peak"] for r in rows), max(r["method_peak"] for r in rows)
        print(f"| {method} | {'before' if code else 'after'} | {rows[0]['seeds']} "
              f"| {min(r['seconds'] for r in rows):.2f} | {min(r['wall'] for r in rows):.2f} | {peak:.0f} "
              f"| {method_peak:.0f} | {peak / method_peak:.2f} "
              f"| {max(r['rss'] for r in rows):.0f} |")


if __name__ == "__main__":
    main()
