"""Packaging: adapters/ installs as onnxfault.adapters only; the CLI starts without heavy imports."""
from __future__ import annotations

import importlib.metadata
import shutil
import subprocess
import sys
import zipfile

import numpy as np

from conftest import ROOT


def run_python(code: str, cwd) -> str:
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, check=True).stdout


def test_only_onnxfault_is_a_top_level_package(tmp_path):
    assert importlib.metadata.distribution("onnxfault").read_text("top_level.txt").split() == ["onnxfault"]
    code = ("import importlib.util, onnxfault.adapters as a;"
            "print(importlib.util.find_spec('adapters') is None, callable(a.from_torch))")
    assert run_python(code, tmp_path).split() == ["True", "True"]


def test_wheel_holds_no_top_level_adapters(tmp_path):
    # from a copy without build/ and *.egg-info: stale ones let a package missing from pyproject slip in
    source = tmp_path / "src"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".venv", ".git", "build", "*.egg-info",
                                                               "__pycache__", ".pytest_cache", "benchmarks"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path), str(source)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("onnxfault-*.whl")
    tops = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert tops == {"onnxfault", f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.dist-info"}
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "onnxfault/adapters/torch_export.py" in names
    sources = {str(p.relative_to(ROOT)) for p in (ROOT / "onnxfault").rglob("*.py")}
    assert sources <= names, f"modules missing from the wheel: {sorted(sources - names)}"


def test_cli_and_adapters_import_lazily(tmp_path):
    code = ("import sys, onnxfault.cli, onnxfault.adapters;"
            "print(*[m in sys.modules for m in ('onnxruntime', 'onnx', 'torch', 'numpy')])")
    assert run_python(code, tmp_path).split() == ["False"] * 4


def test_from_torch_round_trip(tmp_path):
    import torch

    from onnxfault import load_model
    from onnxfault.adapters import from_torch

    from collections import OrderedDict

    torch.manual_seed(0)
    net = torch.nn.Sequential(OrderedDict(flat=torch.nn.Flatten(), fc1=torch.nn.Linear(12, 8), act=torch.nn.ELU(),
                                          fc2=torch.nn.Linear(8, 3)))
    x = torch.rand(5, 3, 2, 2)
    result = from_torch(net, x[:1], tmp_path / "net.onnx")
    assert (result.inputs, result.outputs) == ([("input", ["N", 3, 2, 2])], [("logits", ["N", 3])])
    model = load_model(result.path)
    assert model.fixed_batch is None and [(l.tensor, l.op) for l in model.layers] == [("act", "Elu")]
    assert {"flat", "fc1", "act"} <= {v.name for v in model.proto.graph.value_info}
    with torch.no_grad():
        want = net(x).numpy()
    assert np.allclose(model.session("cpu").run(x.numpy())[0], want, atol=1e-5)
