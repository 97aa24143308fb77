"""Shared fixtures: paths to shipped examples and shared data, tiny hand-built ONNX graphs, a CLI runner."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
SHARED = ROOT.parent / "shared" / "data"
MNIST_IMAGES = SHARED / "mnist" / "t10k-images-idx3-ubyte.gz"


@pytest.fixture
def mnist_images() -> Path:
    if not MNIST_IMAGES.is_file():
        pytest.skip(f"needs the MNIST test set at {MNIST_IMAGES} (../shared/data beside the repo)")
    return MNIST_IMAGES


@pytest.fixture
def dense_onnx() -> Path:
    return EXAMPLES / "mnist_dense.onnx"


@pytest.fixture
def lenet_onnx() -> Path:
    return EXAMPLES / "mnist_lenet.onnx"


@pytest.fixture
def sample_npz() -> Path:
    return EXAMPLES / "mnist_sample.npz"


def init(name: str, array) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(array, np.float32), name)


def make_model(nodes, inputs, outputs, initializers=(), opset: int = 17) -> onnx.ModelProto:
    """A checked ModelProto from helper nodes and (name, elem_type, shape) input/output triples."""
    graph = helper.make_graph(
        nodes, "test",
        [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],
        [helper.make_tensor_value_info(n, t, s) for n, t, s in outputs],
        list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def save(model: onnx.ModelProto, path: Path) -> Path:
    onnx.save(model, str(path))
    return path


# The hand-built network of test_spectrum_hand: x (N,2) → Gemm W1 (2→3) → Relu h → Gemm W2 (3→2) → logits.
W1 = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, -1.0]], np.float32)  # h = relu(x @ W1)
W2 = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]], np.float32)  # logits = h @ W2


@pytest.fixture
def tiny_mlp(tmp_path) -> Path:
    nodes = [helper.make_node("Gemm", ["x", "W1"], ["pre"], name="fc1"),
             helper.make_node("Relu", ["pre"], ["h"], name="act1"),
             helper.make_node("Gemm", ["h", "W2"], ["logits"], name="fc2")]
    model = make_model(nodes, [("x", TensorProto.FLOAT, ["N", 2])], [("logits", TensorProto.FLOAT, ["N", 2])],
                       [init("W1", W1), init("W2", W2)])
    return save(model, tmp_path / "tiny.onnx")


@pytest.fixture
def cli():
    from typer.testing import CliRunner

    from onnxfault.cli import app

    runner = CliRunner()

    def run(*args: str):
        return runner.invoke(app, [str(a) for a in args])

    return run


def run_cli(*args):
    """The CLI in-process, with sys.argv as a shell would set it (runs record their command line)."""
    import sys
    from unittest import mock

    from typer.testing import CliRunner

    from onnxfault.cli import app

    args = [str(a) for a in args]
    with mock.patch.object(sys, "argv", ["onnxfault", *args]):
        return CliRunner().invoke(app, args)


@pytest.fixture(scope="session")
def report_runs(tmp_path_factory):
    """Real runs on the shipped examples, then their report page: localize at channel and element
    granularity (LeNet), synthesize deepfault with k = 5 and 10 and fgsm (dense net)."""
    root = tmp_path_factory.mktemp("runs")
    lenet = [EXAMPLES / "mnist_lenet.onnx", "--data", EXAMPLES / "mnist_sample.npz"]
    dense = [EXAMPLES / "mnist_dense.onnx", "--data", EXAMPLES / "mnist_sample.npz", "--samples", "2"]
    commands = {
        "loc": ["localize", *lenet, "--layers", "all", "--json", root / "loc.json", "-q"],
        "elem": ["localize", *lenet, "--layers", "conv2,relu3", "--granularity", "element", "--measure", "tarantula",
                 "-k", "6", "--json", root / "elem.json", "-q"],
        "k5": ["synthesize", *dense, "--method", "deepfault", "-k", "5", "--out", root / "k5", "-q"],
        "k10": ["synthesize", *dense, "--method", "deepfault", "-k", "10", "--out", root / "k10", "-q"],
        "fgsm": ["synthesize", *dense, "--method", "fgsm", "--out", root / "fgsm", "-q"],
    }
    for args in commands.values():
        result = run_cli(*args)
        assert result.exit_code == 0, result.output
    paths = [root / "loc.json", root / "elem.json", root / "k5", root / "k10", root / "fgsm"]
    out = root / "report.html"
    result = run_cli("report", *paths, "-o", out)
    assert result.exit_code == 0, result.output
    return {"paths": paths, "commands": commands, "html": out.read_text(), "out": out}
