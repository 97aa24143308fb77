"""Hit-spectrum speed: vectorized spectrum vs DeepFault's sequential loop vs a bare onnxruntime forward.

Run by hand (not in CI); results go to benchmarks/RESULTS.md:

    python benchmarks/spectrum.py [--mnist ../shared/data/mnist/t10k-images-idx3-ubyte.gz] [--repeat 3]

Nets: a 10×100 dense ReLU net (torch default init, seed 0: random weights) and the shipped LeNet-5-sized
examples/mnist_lenet.onnx (trained). Data: the 10,000 MNIST test images, held in memory as uint8 so that
every variant pays the same preprocessing. Channel granularity, threshold 0, mode "all".
Each time is the best of --repeat rounds that run the variants in turn, in an order rotated each round
(so drift in the machine's speed and position effects hit them alike). "bare forward" and "spectrum" both include building their onnxruntime session (the
spectrum's on the graph with the activity probe added); the DeepFault loop runs once.
"""
from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from deepfault_reference import deepfault_loop, read_mnist  # noqa: E402

from onnxfault import DataOptions, load_model  # noqa: E402
from onnxfault.data.dataset import Dataset  # noqa: E402
from onnxfault.data.source import in_memory  # noqa: E402
from onnxfault.graph import expose_activity  # noqa: E402
from onnxfault.spectrum import count_hits, hit_spectrum, probe_axes  # noqa: E402
from synthesis import build  # noqa: E402  (benchmarks/synthesis.py: the same seeded dense 10×100 net)
from timing import interleaved  # noqa: E402  (benchmarks/timing.py)


def bench(path: Path, images: np.ndarray, labels: np.ndarray, repeat: int) -> dict:
    model = load_model(path)
    layers = model.layers
    dataset = Dataset(in_memory("mnist", images, labels, "hw"), model.input_shape, DataOptions())

    exposed = model.session("cpu", [layer.tensor for layer in layers])
    probe_model, column_order = expose_activity(model.scores_only(), [(l.tensor, probe_axes(l, "channel")) for l in layers], 0.0)
    assert column_order == sorted(column_order), "benchmark nets have one activity group"
    probe = model.session_for(probe_model, "cpu")

    def bare_forward():  # like hit_spectrum, it builds its session first
        session = model.session_for(model.scores_only(), "cpu")
        return [session.run(x)[0].argmax(-1) for x, _ in dataset.batches()]

    def spectrum():
        return hit_spectrum(model, dataset, layers, device="cpu").counts

    def probe_forward():
        return [(probe.run(x), y) for x, y in dataset.batches()]

    def exposed_forward():
        return [(exposed.run_named(x), y) for x, y in dataset.batches()]

    probed = probe_forward()

    def vectorized_counting():
        return np.sum([count_hits(active, scores.argmax(-1) != y) for (scores, active), y in probed], axis=0)

    times, results = interleaved({"bare": bare_forward, "spectrum": spectrum, "probe": probe_forward,
                                  "count": vectorized_counting}, repeat)
    counts, counted = results["spectrum"], results["count"]
    start = time.perf_counter()
    batches = exposed_forward()
    t_exposed = time.perf_counter() - start
    activations = [np.concatenate([o[l.tensor] for o, _ in batches]) for l in layers]
    predictions = np.concatenate([o[model.output_name].argmax(-1) for o, _ in batches])
    start = time.perf_counter()
    looped = deepfault_loop(activations, predictions, labels, lambda p, t: p != t, "channel", 0.0)
    t_loop = time.perf_counter() - start
    assert np.array_equal(counts, looped) and np.array_equal(counted, looped), "spectra differ"
    return {"net": path.stem, "neurons": int(counts.shape[1]), **times, "exposed": t_exposed, "loop": t_loop}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mnist", type=Path, default=ROOT.parent / "shared/data/mnist/t10k-images-idx3-ubyte.gz")
    parser.add_argument("--repeat", type=int, default=8)
    args = parser.parse_args()
    x, y = read_mnist(args.mnist)
    images = (x[:, 0] * 255).round().astype(np.uint8)
    import onnxruntime

    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    import os

    print(f"machine: {cpu}, {os.cpu_count()} cores; Python {platform.python_version()}, "
          f"onnxruntime {onnxruntime.__version__}, numpy {np.__version__}; {len(images)} images")
    with tempfile.TemporaryDirectory() as tmp:
        rows = [bench(build("dense_10x100", Path(tmp))[0], images, y, args.repeat),
                bench(ROOT / "examples/mnist_lenet.onnx", images, y, args.repeat)]
    print("| net | neurons | bare forward s | spectrum s | spectrum / bare | probe forward s "
          "| counting s | DeepFault loop s (counting) | loop / counting | exposed forward + loop s "
          "| loop end-to-end / spectrum |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        loop_total = r["exposed"] + r["loop"]
        print(f"| {r['net']} | {r['neurons']} | {r['bare']:.3f} | {r['spectrum']:.3f} | "
              f"{r['spectrum'] / r['bare']:.2f}× | {r['probe']:.3f} | {r['count']:.4f} | {r['loop']:.2f} | "
              f"{r['loop'] / r['count']:.0f}× | {loop_total:.2f} | {loop_total / r['spectrum']:.0f}× |")

if __name__ == "__main__":
    main()
