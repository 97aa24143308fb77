"""PyTorch → ONNX: TorchScript archives through `onnxfault convert`, tensors named after modules."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from onnxfault import load_model

from conftest import EXAMPLES


@pytest.fixture
def traced(tmp_path):
    import sys

    sys.path.insert(0, str(EXAMPLES))
    from cross_framework import torch_lenet

    torch.manual_seed(0)
    net = torch_lenet().eval()
    path = tmp_path / "lenet.pt"
    torch.jit.save(torch.jit.trace(net, torch.rand(1, 1, 28, 28)), str(path))
    return net, path


def test_torchscript_converts_with_module_names(cli, traced, tmp_path):
    net, path = traced
    result = cli("convert", path, "-o", tmp_path / "lenet.onnx", "--input-shape", "1,28,28")
    assert result.exit_code == 0, result.output
    model = load_model(tmp_path / "lenet.onnx")
    assert [l.tensor for l in model.layers] == ["relu1", "relu2", "relu3", "relu4"]
    x = torch.rand(6, 1, 28, 28)
    with torch.no_grad():
        want = net(x).numpy()
    assert np.abs(model.session("cpu").run(x.numpy())[0] - want).max() < 1e-5


def test_torchscript_bad_input(cli, traced, tmp_path):
    _, path = traced
    missing = cli("convert", path, "-o", tmp_path / "a.onnx")
    assert missing.exit_code == 1 and "needs --input-shape" in missing.stderr
    (tmp_path / "junk.pt").write_text("junk")
    junk = cli("convert", tmp_path / "junk.pt", "-o", tmp_path / "b.onnx", "--input-shape", "1,28,28")
    assert junk.exit_code == 1 and "is not a TorchScript archive" in junk.stderr
    assert len(junk.stderr.strip().splitlines()) == 1
    assert not list(tmp_path.glob("*.onnx"))
