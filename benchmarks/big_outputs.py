"""Big models' outputs: `localize --json` at element granularity on ResNet-50, and the report built from it.

Run by hand (not in CI); results go to benchmarks/RESULTS.md:

    python benchmarks/big_outputs.py [--folder DIR] [--samples 32] [--code /tmp/of-base]

ResNet-50 (torchvision's layout: bottleneck blocks 3-4-6-3, BatchNorm, 1000 classes) is built here in plain torch
(torchvision is not installable) with random weights (seed 0), exported to ONNX (opset 17), and given ``--samples``
random 224×224×3 uint8 images with random labels in an npz. Then, each under ``/usr/bin/time -v``:
``onnxfault localize MODEL --data DATA --granularity element --json OUT.json -q`` and ``onnxfault report OUT.json
-o OUT.html``. The table gives wall seconds, peak RSS and the size of every file written. ``--code`` runs the
same commands with another checkout of onnxfault first on ``PYTHONPATH`` (e.g. the code before the change), from
a folder outside this repository.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np


def resnet50(classes: int = 1000):
    """ResNet-50 v1.5 (stride on the 3×3 convolution), as torchvision's ``resnet50``."""
    import torch
    from torch import nn

    class Bottleneck(nn.Module):
        def __init__(self, cin: int, width: int, stride: int):
            super().__init__()
            cout = 4 * width
            self.body = nn.Sequential(
                nn.Conv2d(cin, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
                nn.Conv2d(width, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
                nn.Conv2d(width, cout, 1, bias=False), nn.BatchNorm2d(cout))
            self.shortcut = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                             if stride != 1 or cin != cout else nn.Identity())
            self.relu = nn.ReLU()

        def forward(self, x):
            return self.relu(self.body(x) + self.shortcut(x))

    torch.manual_seed(0)
    layers: list[nn.Module] = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
                               nn.MaxPool2d(3, 2, 1)]
    cin = 64
    for width, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
        for b in range(blocks):
            layers.append(Bottleneck(cin, width, stride if b == 0 else 1))
            cin = 4 * width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, classes)]
    return nn.Sequential(*layers).eval()


def make_inputs(folder: Path, samples: int) -> tuple[Path, Path]:
    """The model's ONNX file and an npz of ``samples`` random images (x: N×224×224×3 uint8, y: labels)."""
    import torch

    from onnxfault.adapters import from_torch

    model = folder / "resnet50.onnx"
    if not model.exists():
        from_torch(resnet50(), torch.rand(1, 3, 224, 224), model)
    data = folder / f"images{samples}.npz"
    rng = np.random.default_rng(0)
    np.savez(data, x=rng.integers(0, 256, (samples, 224, 224, 3), dtype=np.uint8),
             y=rng.integers(0, 1000, samples).astype(np.int64))
    return model, data


def timed(command: list[str], env: dict, cwd: Path) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of ``command`` under /usr/bin/time -v."""
    proc = subprocess.run(["/usr/bin/time", "-v", *command], env=env, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{proc.stderr[-3000:]}")
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (?:(\d+):)?(\d+):([\d.]+)", proc.stderr)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    seconds = int(wall.group(1) or 0) * 3600 + int(wall.group(2)) * 60 + float(wall.group(3))
    return seconds, int(rss.group(1)) / 1024


def run(code: str | None, model: Path, data: Path, folder: Path, label: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if code:
        env["PYTHONPATH"] = code
    cli = [sys.executable, "-m", "onnxfault.cli"]
    out = folder / f"{label}.json"
    local_s, local_mb = timed([*cli, "localize", str(model), "--data", str(data), "--granularity", "element",
                               "--json", str(out), "-q"], env, folder)
    report_s, report_mb = timed([*cli, "report", str(out), "-o", str(folder / f"{label}.html")], env, folder)
    written = sorted(p for p in folder.iterdir() if p.name.startswith(label + "."))
    sizes = ", ".join(f"{p.name} {p.stat().st_size / 1e6:.2f} MB" for p in written)
    print(f"| {label} | {local_s:.1f} | {local_mb:.0f} | {report_s:.1f} | {report_mb:.0f} | {sizes} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", type=Path, help="where the model, data and outputs go (default: a temp folder)")
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--code", help="another onnxfault checkout to measure first (PYTHONPATH), e.g. /tmp/of-base")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = (args.folder or Path(tmp)).resolve()
        folder.mkdir(parents=True, exist_ok=True)
        model, data = make_inputs(folder, args.samples)
        print(f"ResNet-50, {args.samples} samples, element granularity; {folder}")
        print("| code | localize s | localize peak MB | report s | report peak MB | files |")
        print("|---|---|---|---|---|---|")
        if args.code:
            run(str(Path(args.code).resolve()), model, data, folder, "before")
        run(None, model, data, folder, "after")


if __name__ == "__main__":
    main()
