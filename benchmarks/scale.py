"""Scaling out: `localize` over 10k / 100k / 1M MNIST-shaped samples in one process and on Ray.

Run by hand (not in CI); results go to benchmarks/RESULTS.md:

    python benchmarks/scale.py [--sizes 10000,100000,1000000] [--models lenet,8_20] [--workers 1,2]
                               [--mnist ../shared/data/mnist/t10k-images-idx3-ubyte.gz]

Data: the 10,000 MNIST test images (the shipped 2,000-sample examples/mnist_sample.npz when the test set is
absent), tiled to each size and written into a temporary folder as stored .npz shards of 50,000 samples
(``--data`` a folder: every worker opens the shards it needs itself). Each run is a fresh process
(``localize(model, folder, device="cpu")``, in one process or with ``ray=RayOptions("local", N)``, which
starts a local Ray runtime for the run and stops it after): wall time of the call (Ray's start included,
and reported apart), the driver's peak RSS (VmHWM) and each worker's (read by the worker itself). The
spectra of every configuration must be identical to the one-process run's (and to ``tile`` × the 10k
counts). Nets: the shipped LeNet-5 and, with --models 8_20, DeepFault's 8_20 net (converted from
../shared/data/deepfault-models).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared/data"
SHARD = 50_000


def _images(mnist: Path) -> tuple[np.ndarray, np.ndarray]:
    from onnxfault.data import open_source

    if mnist.is_file():
        source = open_source(mnist)
        return np.concatenate(list(source.chunks(10_000, 0))), source.labels
    data = np.load(ROOT / "examples/mnist_sample.npz")
    return data["x"], data["y"]


def write_shards(folder: Path, x: np.ndarray, y: np.ndarray, size: int) -> Path:
    """``size`` samples (``x`` tiled) as stored .npz shards of ``SHARD`` samples in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, start in enumerate(range(0, size, SHARD)):
        n = min(SHARD, size - start)
        index = np.arange(start, start + n) % len(x)
        np.savez(folder / f"part-{i:04d}.npz", x=x[index], y=y[index])
    return folder


def _model(name: str, tmp: Path) -> Path:
    if name == "lenet":
        return ROOT / "examples/mnist_lenet.onnx"
    from onnxfault.adapters import convert

    out = tmp / "mnist_8_20.onnx"
    if not out.exists():
        convert(SHARED / "deepfault-models/mnist_test_model_8_20_leaky_relu.json", out)
    return out


def child(model: str, data: str, workers: int, counts_out: str) -> dict:
    """One run in this (fresh) process: wall time, the driver's and workers' peak RSS, counts saved."""
    from onnxfault.localization import localize
    from onnxfault.peak_memory import peak_rss_mb

    ray = None
    ray_start = 0.0
    if workers:
        import ray as ray_module

        from onnxfault.distributed import RayOptions
        from onnxfault.distributed.workers import LAST_POOL

        ray = RayOptions("local", workers)
    start = time.perf_counter()
    if workers:  # the runtime's start-up, timed apart (localize then joins it)
        ray_module.init(address="local", num_cpus=max(os.cpu_count() or 1, workers), include_dashboard=False,
                        log_to_driver=False, _node_ip_address="127.0.0.1", configure_logging=True,
                        logging_level="ERROR")
        ray_start = time.perf_counter() - start
    result = localize(model, data, device="cpu", ray=ray)
    seconds = time.perf_counter() - start
    if workers:
        ray_module.shutdown()
    np.save(counts_out, result.spectrum.counts)
    return {"seconds": seconds, "ray_start": ray_start, "driver_mb": peak_rss_mb(), "samples": result.spectrum.samples,
            "workers_mb": LAST_POOL.get("worker_peak_rss_mb") if workers else None,
            "shards": LAST_POOL.get("items") if workers else None}


def run(model: Path, data: Path, workers: int, tmp: Path) -> tuple[dict, np.ndarray]:
    counts = tmp / f"counts-{os.getpid()}-{time.time_ns()}.npy"
    done = subprocess.run([sys.executable, __file__, "--child", str(model), str(data), str(workers), str(counts)],
                          capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(done.stderr)
    return json.loads(done.stdout.strip().splitlines()[-1]), np.load(counts)


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        model, data, workers, counts = sys.argv[2:6]
        print(json.dumps(child(model, data, int(workers), counts)))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--models", default="lenet")
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--mnist", type=Path, default=SHARED / "mnist/t10k-images-idx3-ubyte.gz")
    args = parser.parse_args()
    x, y = _images(args.mnist)
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print("| model | samples | run | wall s | Ray start s | driver peak MB | worker peak MB | shards | counts |")
    print("|---|---:|---|---:|---:|---:|---|---:|---|")
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        for size in (int(s) for s in args.sizes.split(",")):
            data = write_shards(tmp / f"mnist-{size}", x, y, size)
            for model_name in args.models.split(","):
                model = _model(model_name, tmp)
                reference = None
                for workers in [0, *(int(w) for w in args.workers.split(","))]:
                    info, counts = run(model, data, workers, tmp)
                    reference = counts if reference is None else reference
                    same = "identical" if np.array_equal(counts, reference) and info["samples"] == size else "DIFFER"
                    label = "one process" if not workers else f"Ray, {workers} worker{'s' if workers > 1 else ''}"
                    peaks = "-" if not workers else " / ".join(f"{p:.0f}" for p in info["workers_mb"])
                    print(f"| {model_name} | {size:,} | {label} | {info['seconds']:.1f} | "
                          f"{info['ray_start']:.1f} | {info['driver_mb']:.0f} | {peaks} | {info['shards'] or '-'} | "
                          f"{same} |", flush=True)
            for part in data.iterdir():
                part.unlink()


if __name__ == "__main__":
    main()
