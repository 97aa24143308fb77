"""Issue 23, items 8 and 9: the declared class count is checked against what the model computes, and class
folders are numbered as their names say (numerically, or by ``classes.txt``), with the map shown and recorded."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxfault
from onnxfault import OnnxFaultError
from onnxfault.data.folder import class_folders, open_folder

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def linear_model(path: Path, inputs: int, computed: int, declared: int, shape=("N", 1, 28, 28)) -> Path:
    """Flatten → MatMul to ``computed`` scores, with the output declared as (N, ``declared``)."""
    w = numpy_helper.from_array(np.random.default_rng(0).normal(size=(inputs, computed)).astype(np.float32), "W")
    graph = helper.make_graph([helper.make_node("Flatten", ["x"], ["f"]), helper.make_node("MatMul", ["f", "W"], ["s"])],
                              "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
                              [helper.make_tensor_value_info("s", TensorProto.FLOAT, ["N", declared])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def one_line_error(result, message: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert message in lines[0] and "Traceback" not in result.output


# ---- item 8 -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("command", ["evaluate", "localize", "synthesize"])
def test_a_model_computing_fewer_classes_than_it_declares_is_refused(cli, tmp_path, command):
    model = linear_model(tmp_path / "wide.onnx", 784, 3, 10)  # declares 10, computes 3: was 7.5 % accuracy, exit 0
    extra = {"localize": ["--layers", "f", "--json", tmp_path / "r.json"],
             "synthesize": ["--method", "fgsm", "--out", tmp_path / "run"], "evaluate": ["--json", tmp_path / "e.json"]}
    result = cli(command, model, "--data", EXAMPLES / "mnist_sample.npz", *extra[command])
    one_line_error(result, "the model declares 10 classes for its output 's' but computes 3 on the first batch; "
                           "the data's labels go up to 9")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wide.onnx"]


def test_a_model_computing_more_classes_than_it_declares_names_that_cause(cli, tmp_path):
    model = linear_model(tmp_path / "narrow.onnx", 784, 10, 3)  # declares 3, computes 10: was "label 9 … only 3"
    one_line_error(cli("evaluate", model, "--data", EXAMPLES / "mnist_sample.npz"),
                   "the model declares 3 classes for its output 's' but computes 10, and the data's labels go up to 9")
    with pytest.raises(OnnxFaultError, match="declares 3 classes .* but computes 10"):
        onnxfault.evaluate(model, EXAMPLES / "mnist_sample.npz")


def test_labels_beyond_a_correct_declaration_still_blame_the_data(cli, tmp_path):
    model = linear_model(tmp_path / "three.onnx", 784, 3, 3)
    one_line_error(cli("evaluate", model, "--data", EXAMPLES / "mnist_sample.npz"),
                   "the data has label 9 but the model has only 3 classes")


# ---- item 9: class folders ------------------------------------------------------------------------------------
def image_folders(root: Path, names: list[str], per_class: int = 2) -> Path:
    from PIL import Image

    for label, name in enumerate(names):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = np.full((8, 8), (label * 20 + i) % 256, np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


def test_numeric_folder_names_are_numbered_numerically(tmp_path):
    root = image_folders(tmp_path / "digits", [str(i) for i in range(11)])
    assert [p.name for p in class_folders(root)] == [str(i) for i in range(11)]  # 2 before 10, not after
    source = open_folder(root)
    assert source.class_names == tuple(str(i) for i in range(11))
    values = np.concatenate(list(source.chunks(64, 0)))[:, 0, 0]
    assert source.labels.tolist() == [int(v) // 20 for v in values]  # each image in the class its folder names


def test_classes_txt_orders_named_folders(tmp_path):
    root = image_folders(tmp_path / "named", ["zero", "one", "two"])
    assert [p.name for p in class_folders(root)] == ["one", "two", "zero"]  # name order without a list
    (root / "classes.txt").write_text("zero\none\ntwo\n")
    assert [p.name for p in class_folders(root)] == ["zero", "one", "two"]
    assert open_folder(root).labels.tolist() == [0, 0, 1, 1, 2, 2]


@pytest.mark.parametrize("listed, message", [
    ("zero\none\n", "does not name the folder 'two'"),
    ("zero\none\ntwo\nthree\n", "names 'three', which is no folder"),
    ("zero\none\none\ntwo\n", "names a folder twice"),
])
def test_a_wrong_classes_txt_is_one_error(cli, tmp_path, listed, message):
    root = image_folders(tmp_path / "named", ["zero", "one", "two"])
    (root / "classes.txt").write_text(listed)
    model = linear_model(tmp_path / "m.onnx", 64, 3, 3, ("N", 1, 8, 8))
    one_line_error(cli("evaluate", model, "--data", root), message)


def test_the_folder_to_class_map_is_shown_and_recorded(cli, tmp_path):
    root = image_folders(tmp_path / "digits", [str(i) for i in range(11)])
    model = linear_model(tmp_path / "m.onnx", 64, 11, 11, ("N", 1, 8, 8))
    result = cli("evaluate", model, "--data", root, "--json", tmp_path / "e.json", "-q")
    assert result.exit_code == 0, result.output
    assert "class numbers by folder 0=0, 1=1, 2=2, 3=3" in result.stderr and ", 10=10" in result.stderr
    recorded = json.loads((tmp_path / "e.json").read_text())
    assert recorded["class_names"] == [str(i) for i in range(11)]
    assert onnxfault.load(tmp_path / "e.json").provenance["class_names"] == recorded["class_names"]
    ranked = onnxfault.localize(model, root, layers="f", k=2)
    assert ranked.to_json()["class_names"] == recorded["class_names"]
    assert any("class numbers by folder" in w for w in ranked.warnings)


def test_a_broken_or_special_classes_txt_is_one_error(cli, tmp_path):
    root = image_folders(tmp_path / "named", ["zero", "one"])
    model = linear_model(tmp_path / "m.onnx", 64, 2, 2, ("N", 1, 8, 8))
    (root / "classes.txt").symlink_to("nowhere.txt")
    one_line_error(cli("evaluate", model, "--data", root), "cannot read")
    (root / "classes.txt").unlink()
    os.mkfifo(root / "classes.txt")
    one_line_error(cli("evaluate", model, "--data", root), "is not a list of class folder names")


def test_class_names_flag_orders_named_folders_and_is_recorded(cli, tmp_path):
    root = image_folders(tmp_path / "named", ["zero", "one", "two"])
    model = linear_model(tmp_path / "m.onnx", 64, 3, 3, ("N", 1, 8, 8))
    result = cli("evaluate", model, "--data", root, "--class-names", "zero,one,two", "--json", tmp_path / "e.json", "-q")
    assert result.exit_code == 0, result.output
    assert "class numbers by folder 0=zero, 1=one, 2=two" in result.stderr
    recorded = json.loads((tmp_path / "e.json").read_text())
    assert recorded["class_names"] == ["zero", "one", "two"]
    again = onnxfault.evaluate(model, root, data_options=onnxfault.DataOptions(class_names=("zero", "one", "two")))
    assert np.array_equal(recorded["confusion"], again.confusion) and again.samples == 6
    by_folder = [int(v) // 20 for v in np.concatenate(list(open_folder(root, None, ("zero", "one", "two")).chunks(64, 0)))[:, 0, 0]]
    assert open_folder(root, None, ("zero", "one", "two")).labels.tolist() == by_folder == [0, 0, 1, 1, 2, 2]


@pytest.mark.parametrize("flag, message", [
    ("zero,one", "error: --class-names does not name the folder 'two'; list every class folder once, in class order"),
    ("zero,one,two,three", "error: --class-names names 'three', which is no folder of"),
    ("zero,one,one,two", "error: --class-names names the folder 'one' twice; list each class folder once"),
    ("zero,,two", "error: --class-names lists the class folders in class order, e.g. --class-names zero,one,two"),
])
def test_a_wrong_class_names_flag_is_one_error(cli, tmp_path, flag, message):
    root = image_folders(tmp_path / "named", ["zero", "one", "two"])
    model = linear_model(tmp_path / "m.onnx", 64, 3, 3, ("N", 1, 8, 8))
    before = sorted(p.name for p in tmp_path.iterdir())
    one_line_error(cli("evaluate", model, "--data", root, "--class-names", flag, "--json", tmp_path / "e.json"), message)
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_class_names_against_classes_txt_or_without_class_folders_is_one_error(cli, tmp_path):
    root = image_folders(tmp_path / "named", ["zero", "one", "two"])
    (root / "classes.txt").write_text("zero\none\ntwo\n")
    model = linear_model(tmp_path / "m.onnx", 64, 3, 3, ("N", 1, 8, 8))
    one_line_error(cli("evaluate", model, "--data", root, "--class-names", "two,one,zero"),
                   "error: --class-names and " + str(root / "classes.txt") + " give different class orders")
    assert cli("evaluate", model, "--data", root, "--class-names", "zero,one,two", "-q").exit_code == 0  # they agree
    one_line_error(cli("evaluate", EXAMPLES / "mnist_dense.onnx", "--data", EXAMPLES / "mnist_sample.npz",
                       "--class-names", "a,b"), "orders class folders (root/<class>/…), and")
    x, y = np.zeros((2, 1, 8, 8), np.float32), np.array([0, 1])
    with pytest.raises(OnnxFaultError, match="data in memory has its labels already"):
        onnxfault.evaluate(model, (x, y), data_options=onnxfault.DataOptions(class_names=["a", "b"]))


# ---- item 9: a shuffling loader where a second pass must read the same samples --------------------------------
def test_a_shuffling_loader_is_an_error_where_two_passes_must_agree():
    torch = pytest.importorskip("torch")
    from torch.utils.data import DataLoader, TensorDataset

    with np.load(EXAMPLES / "mnist_sample.npz") as sample:
        ds = TensorDataset(torch.tensor(sample["x"][:400]), torch.tensor(sample["y"][:400]))
    model = EXAMPLES / "mnist_dense.onnx"
    plain = [onnxfault.synthesize(model, DataLoader(ds, batch_size=64), method="deepfault", samples=2, seed=0)
             for _ in range(2)]
    assert plain[0].report["seeds"] == plain[1].report["seeds"]  # the same seeds, call after call
    torch.manual_seed(0)
    with pytest.raises(OnnxFaultError, match="a second pass over the batches read other samples than the first"):
        onnxfault.synthesize(model, DataLoader(ds, batch_size=64, shuffle=True), method="deepfault", samples=2, seed=0)
    once = onnxfault.synthesize(model, DataLoader(ds, batch_size=64, shuffle=True), method="fgsm", samples=2)
    assert once.report["seeds"]["count"] == 20  # one pass: shuffling changes nothing there
