"""Reading a stored .npz member: memory-mapped views against reads into each batch's array, inside `localize`.

Run by hand (not in CI); results go to benchmarks/RESULTS.md:

    python benchmarks/reading.py [--mnist ../shared/data/mnist/t10k-images-idx3-ubyte.gz] [--rounds 200]

The 10,000 MNIST test images are written as a stored (``numpy.savez``) .npz in a temporary folder, and
``onnxfault.localize`` runs on DeepFault's 8_20 net (converted from ../shared/data/deepfault-models) and on the
shipped LeNet-5 over it, alternating between two readers of the member's samples:

- **mmap**: onnxfault's own (``onnxfault.data.source.mapped_rows``): the member memory-mapped (MAP_POPULATE;
  in one go when it is at most 16 MiB, else 4 MiB windows) and each batch a view of the map;
- **read**: the alternative: ``readinto`` a fresh array per batch (one copy from the file cache).

Each net runs ``--rounds`` times, the two readers alternating; each reader's first 10 are dropped (warm-up). The
spectra must be identical. Reported: best, median and mean seconds per ``localize`` call.
"""
from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared/data"


def read_rows(path: Path, offset: int, count: int, sample_shape: tuple[int, ...], dtype: np.dtype, rows: int,
              first: int = 0):
    """The alternative measured: ``readinto`` a fresh array per batch (same arguments, same blocks as
    ``onnxfault.data.source.mapped_rows``)."""
    row_bytes = math.prod(sample_shape) * dtype.itemsize
    with open(path, "rb", buffering=0) as fh:
        fh.seek(offset + first * row_bytes)
        for start in range(first, count, rows):
            block = np.empty((min(rows, count - start), *sample_shape), dtype)
            flat, done = block.reshape(-1).view(np.uint8), 0
            while done < len(flat):
                got = fh.readinto(flat[done:])
                if not got:
                    raise EOFError(f"{path} ends early")
                done += got
            yield block.astype(dtype.newbyteorder("="), copy=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mnist", type=Path, default=SHARED / "mnist/t10k-images-idx3-ubyte.gz")
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    from onnxfault import localize
    from onnxfault.adapters import convert
    from onnxfault.data import npz
    from onnxfault.data.idx import read_idx_array

    readers = {"mmap": npz.mapped_rows, "read": read_rows}
    images = read_idx_array(args.mnist)
    labels = read_idx_array(Path(str(args.mnist).replace("images-idx3", "labels-idx1"))).astype(np.int64)
    print(f"{len(images):,} MNIST images, stored npz; {args.rounds} rounds per net, readers alternating:\n")
    print("| net | reader | best ms | median ms | mean ms |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "stored.npz"
        np.savez(data, x=images, y=labels)
        source = SHARED / "deepfault-models/mnist_test_model_8_20_leaky_relu.json"
        nets = {"8_20": convert(source, Path(tmp) / "mnist_8_20.onnx").path, "lenet5": ROOT / "examples/mnist_lenet.onnx"}
        for net, model in nets.items():
            times: dict[str, list[float]] = {name: [] for name in readers}
            counts = {}
            for round_ in range(args.rounds):
                name = list(readers)[round_ % 2]
                npz.mapped_rows = readers[name]
                began = time.perf_counter()
                counts[name] = localize(str(model), str(data), device="cpu").spectrum.counts
                times[name].append(time.perf_counter() - began)
            npz.mapped_rows = readers["mmap"]
            assert np.array_equal(counts["read"], counts["mmap"]), "the readers give different spectra"
            for name, spent in times.items():
                spent = spent[10:]
                print(f"| {net} | {name} | {min(spent) * 1e3:.2f} | {np.median(spent) * 1e3:.2f} | "
                      f"{np.mean(spent) * 1e3:.2f} |")


if __name__ == "__main__":
    main()
