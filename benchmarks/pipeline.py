"""Data pipeline speed: `localize` end to end against an onnxruntime floor, at 10k and 1M MNIST samples.

Run by hand (not in CI); results go to benchmarks/RESULTS.md:

    python benchmarks/pipeline.py [--mnist ../shared/data/mnist/t10k-images-idx3-ubyte.gz] [--repeat 8]
                                  [--tile 100] [--large-repeat 2] [--skip-large]

Nets: DeepFault's 8_20 LeakyReLU net (converted from ../shared/data/deepfault-models with onnxfault's Keras
reader) and the shipped LeNet-5 (examples/mnist_lenet.onnx). Data: the 10,000 MNIST test images, written by
this script into a temporary folder as a stored (uncompressed) .npz, a compressed .npz, and tiled
``--tile`` times (1M samples) into a stored and a compressed .npz.

- **floor**: an onnxruntime session of the plain model built from its file, then per batch of 256 the
  in-memory uint8 images ``x.astype(float32) / 255`` and ``session.run``, argmax.
- **localize**: ``onnxfault.localize(model, data_file, device="cpu")`` end to end (model checks, layer
  discovery, graph surgery, session, reading the file, counting, ranking).
Each 10k time is the best of ``--repeat`` rounds that run the variants in turn, in an order rotated each
round. At 1M, ``ort share`` is the time spent inside onnxruntime's ``InferenceSession.run`` over the whole
``localize`` call (best round). Peak RSS is measured in a fresh process per run (VmHWM). The spectra must
agree across every file format, and the 1M spectra must be exactly ``--tile`` times the 10k ones.

Runs against any onnxfault on PYTHONPATH (e.g. a checkout of an older version, for before/after).
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from timing import interleaved  # benchmarks/timing.py

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared/data"
BATCH = 256


def floor(model_path: Path, images: np.ndarray) -> np.ndarray:
    """The onnxruntime floor: session build, uint8 → float32 / 255 per batch, forward, argmax."""
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    first = session.get_inputs()[0]
    shape = [d for d in first.shape[1:]]
    predictions = []
    for start in range(0, len(images), BATCH):
        x = images[start:start + BATCH].astype(np.float32) / np.float32(255)
        predictions.append(session.run(None, {first.name: x.reshape(len(x), *shape)})[0].argmax(-1))
    return np.concatenate(predictions)


class OrtClock:
    """Time spent inside ``InferenceSession.run`` while active (wraps the class method)."""

    def __init__(self):
        self.seconds = 0.0
        self._original = ort.InferenceSession.run

    def __enter__(self):
        original, clock = self._original, self

        def timed(session, *args, **kwargs):
            start = time.perf_counter()
            try:
                return original(session, *args, **kwargs)
            finally:
                clock.seconds += time.perf_counter() - start

        ort.InferenceSession.run = timed
        return self

    def __exit__(self, *exc):
        ort.InferenceSession.run = self._original


def localize_counts(model_path: Path, data: Path) -> np.ndarray:
    from onnxfault import localize

    return localize(str(model_path), str(data), device="cpu").spectrum.counts


def peak_rss_mb(model_path: Path, data: Path) -> float:
    """Peak resident set size (MB) of a fresh process that runs ``localize`` once."""
    code = ("import sys; from onnxfault import localize; localize(sys.argv[1], sys.argv[2], device='cpu'); "
            "print([int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM')][0] / 1024)")
    done = subprocess.run([sys.executable, "-c", code, str(model_path), str(data)], capture_output=True, text=True,
                          check=True)
    return float(done.stdout.strip().splitlines()[-1])


def write_npz(path: Path, x: np.ndarray, y: np.ndarray, compressed: bool) -> Path:
    (np.savez_compressed if compressed else np.savez)(path, x=x, y=y)
    return path


def convert_8_20(folder: Path) -> Path:
    from onnxfault.adapters import convert

    source = SHARED / "deepfault-models/mnist_test_model_8_20_leaky_relu.json"
    return Path(convert(source, folder / "mnist_8_20.onnx").path)


def small(nets: dict, files: dict, images: np.ndarray, repeat: int) -> list[dict]:
    rows = []
    for net, path in nets.items():
        fns = {"floor": lambda: floor(path, images)}
        fns.update({f"localize {kind}": (lambda data=data: localize_counts(path, data))
                    for kind, data in files.items()})
        times, results = interleaved(fns, repeat)
        counts = [results[f"localize {kind}"] for kind in files]
        assert all(np.array_equal(counts[0], c) for c in counts), "spectra differ between file formats"
        rows.append({"net": net, "counts": counts[0], **times,
                     "rss": peak_rss_mb(path, files["stored npz"])})
    return rows


def large(nets: dict, files: dict, reference: dict, tile: int, repeat: int) -> list[dict]:
    rows = []
    for net, path in nets.items():
        for kind, data in files.items():
            best, share = float("inf"), 0.0
            for _ in range(repeat):
                with OrtClock() as clock:
                    start = time.perf_counter()
                    counts = localize_counts(path, data)
                    took = time.perf_counter() - start
                if took < best:
                    best, share = took, clock.seconds / took
            assert np.array_equal(counts, reference[net] * tile), f"{net} {kind}: 1M counts are not {tile}× the 10k"
            rows.append({"net": net, "data": kind, "seconds": best, "share": share, "rss": peak_rss_mb(path, data)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mnist", type=Path, default=SHARED / "mnist/t10k-images-idx3-ubyte.gz")
    parser.add_argument("--repeat", type=int, default=8)
    parser.add_argument("--tile", type=int, default=100)
    parser.add_argument("--large-repeat", type=int, default=2)
    parser.add_argument("--skip-large", action="store_true")
    args = parser.parse_args()
    import onnxfault
    from onnxfault.data.idx import read_idx_array

    images = read_idx_array(args.mnist)
    labels = read_idx_array(Path(str(args.mnist).replace("images-idx3", "labels-idx1"))).astype(np.int64)
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    print(f"machine: {cpu}, {os.cpu_count()} cores; Python {platform.python_version()}, onnxruntime "
          f"{ort.__version__}, numpy {np.__version__}; onnxfault from {Path(onnxfault.__file__).parent}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        nets = {"8_20": convert_8_20(tmp), "lenet5": ROOT / "examples/mnist_lenet.onnx"}
        files = {"stored npz": write_npz(tmp / "10k_stored.npz", images, labels, False),
                 "compressed npz": write_npz(tmp / "10k_deflated.npz", images, labels, True),
                 "IDX gz": args.mnist}
        rows = small(nets, files, images, args.repeat)
        print(f"\n10,000 images, best of {args.repeat} interleaved rounds:\n")
        print("| net | floor s | localize stored npz s | / floor | localize compressed npz s | / floor "
              "| localize IDX gz s | / floor | peak RSS MB |")
        print("|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            f = r["floor"]
            print(f"| {r['net']} | {f:.4f} | " + " | ".join(
                f"{r['localize ' + k]:.4f} | {r['localize ' + k] / f:.2f}×" for k in files) + f" | {r['rss']:.0f} |")
        if args.skip_large:
            return
        big_x, big_y = np.tile(images, (args.tile, 1, 1)), np.tile(labels, args.tile)
        big = {"stored npz": write_npz(tmp / "big_stored.npz", big_x, big_y, False),
               "compressed npz": write_npz(tmp / "big_deflated.npz", big_x, big_y, True)}
        del big_x, big_y
        reference = {r["net"]: r["counts"] for r in rows}
        rows = large(nets, big, reference, args.tile, args.large_repeat)
        print(f"\n{len(images) * args.tile:,} samples (test set tiled {args.tile}×), best of {args.large_repeat}:\n")
        print("| net | data | localize s | onnxruntime share | peak RSS MB |")
        print("|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['net']} | {r['data']} | {r['seconds']:.2f} | {r['share'] * 100:.0f} % | {r['rss']:.0f} |")


if __name__ == "__main__":
    main()
