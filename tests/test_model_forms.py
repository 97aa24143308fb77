"""Models in memory: bytes, an onnx.ModelProto, a torch module, a Keras 3 model or a loaded Model give what the
same model read from a file gives (spectra counts to the integer, confusion matrices, synthesized bytes)."""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx
import pytest
import torch

from onnxfault import DataOptions, OnnxFaultError, as_model, evaluate, inspect_model, load_model, localize, synthesize

OPTIONS = DataOptions(limit=300, batch_size=64)


@pytest.fixture
def own_tmp(tmp_path, monkeypatch):
    """A private temp folder (other processes share the system one), to check nothing is left in it."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setenv("TMPDIR", str(folder))
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    assert tempfile.gettempdir() == str(folder)
    return folder


def assert_same_runs(form, path, data, **kwargs):
    """``localize`` and ``evaluate`` on ``form`` give the file ``path``'s counts, rankings and confusion."""
    want, got = (localize(m, data, data_options=OPTIONS, k=5, **kwargs) for m in (path, form))
    assert got.spectrum.samples == want.spectrum.samples == 300
    assert got.spectrum.counts.dtype == want.spectrum.counts.dtype
    assert np.array_equal(got.spectrum.counts, want.spectrum.counts)
    assert [(n.tensor, n.index, n.score) for n in got.neurons] == [(n.tensor, n.index, n.score) for n in want.neurons]
    assert np.array_equal(got.scores, want.scores, equal_nan=True)
    before, after = (evaluate(m, data, data_options=OPTIONS, **kwargs) for m in (path, form))
    assert np.array_equal(after.confusion, before.confusion) and after.correct == before.correct
    return got, after


@pytest.mark.parametrize("form", ["bytes", "proto", "model"])
def test_onnx_forms_match_the_file(form, dense_onnx, sample_npz):
    proto = onnx.load(str(dense_onnx))
    given = {"bytes": dense_onnx.read_bytes(), "proto": proto, "model": load_model(dense_onnx)}[form]
    result, confusion = assert_same_runs(given, dense_onnx, sample_npz)
    described = {"bytes": "ONNX model bytes (in memory)", "proto": "onnx.ModelProto (in memory)",
                 "model": str(dense_onnx)}[form]
    assert result.model == confusion.model == result.to_json()["model"] == described
    assert onnx.load(str(dense_onnx)).SerializeToString() == proto.SerializeToString()  # the caller's proto untouched


def small_cnn() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Flatten(),
                               torch.nn.Linear(4 * 13 * 13, 16), torch.nn.ReLU(), torch.nn.Linear(16, 10))


def test_torch_module_matches_its_export(tmp_path, own_tmp, sample_npz):
    from onnxfault.adapters import from_torch

    net = small_cnn()
    from_torch(net, torch.rand(1, 1, 28, 28), tmp_path / "cnn.onnx")
    net.train()
    net[1].eval()  # a mixed state, to see each flag restored
    result, _ = assert_same_runs(net, tmp_path / "cnn.onnx", sample_npz, example_input=torch.rand(2, 1, 28, 28))
    described = "torch module Sequential (in memory)"
    assert result.model == described and [l.tensor for l in result.spectrum.layers] == ["1", "5"]
    assert [m.training for m in net.modules()] == [True, True, False, True, True, True, True, True]
    assert inspect_model(net, example_input=np.zeros((1, 1, 28, 28), np.uint8))["model"] == described
    assert not os.listdir(own_tmp)


def test_synthesized_inputs_are_byte_identical(dense_onnx, sample_npz):
    runs = [synthesize(m, sample_npz, method="fgsm", samples=6, seed=3, data_options=OPTIONS)
            for m in (dense_onnx, onnx.load(str(dense_onnx)))]
    for name in ("original", "synthesized", "labels", "predictions_after"):
        assert runs[0].arrays[name].tobytes() == runs[1].arrays[name].tobytes(), name
    assert runs[0].arrays["synthesized"].shape[0] == 60  # 6 seeds for each of the 10 classes
    assert not np.array_equal(runs[0].arrays["synthesized"], runs[0].arrays["original"])
    assert runs[1].report["model"] == "onnx.ModelProto (in memory)"


def test_keras_model_matches_its_export(tmp_path, own_tmp, sample_npz):
    pytest.importorskip("tensorflow", reason="Keras 3 conversion needs onnxfault[keras] (TensorFlow)")
    import keras

    from onnxfault.adapters import from_keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Conv2D(4, 3, activation="relu", name="conv"),
                              keras.layers.Flatten(name="flat"), keras.layers.Dense(10, name="scores")], name="net")
    from_keras(model, tmp_path / "net.onnx")
    result, _ = assert_same_runs(model, tmp_path / "net.onnx", sample_npz)
    assert result.model == "Keras model net (in memory)" and [l.tensor for l in result.spectrum.layers] == ["conv"]
    # TensorFlow's autograph keeps the source of each function it traced, in the temp folder, until exit
    # (an atexit hook removes them); the export itself leaves nothing
    assert [n for n in os.listdir(own_tmp) if not n.startswith("__autograph_generated_file")] == []


def test_keras_model_that_never_ran_takes_example_input(own_tmp):
    pytest.importorskip("tensorflow", reason="Keras 3 conversion needs onnxfault[keras] (TensorFlow)")
    import keras

    class Subclassed(keras.Model):  # declares no input shape until called
        def __init__(self):
            super().__init__(name="sub")
            self.hidden, self.out = keras.layers.Dense(8, activation="relu", name="hidden"), keras.layers.Dense(3)

        def call(self, x):
            return self.out(self.hidden(x))

    with pytest.raises(OnnxFaultError, match="Keras model sub has never run and declares no input shape; pass "
                                             "example_input="):
        as_model(Subclassed())
    with pytest.raises(OnnxFaultError, match=r"example_input of shape \(5,\) does not fit Keras model sub"):
        as_model(Subclassed(), example_input=np.zeros(5, np.float32))  # one sample, no batch axis
    model = as_model(Subclassed(), example_input=np.zeros((2, 5), np.float32))
    assert (model.path, model.input_shape, model.num_classes) == ("Keras model sub (in memory)", (5,), 3)
    assert [l.tensor for l in model.layers] == ["hidden"]


BAD = {
    "another object": (lambda: [1, 2, 3], "model has type list, none of the accepted forms"),
    "torch module without example_input": (small_cnn, "given without example_input"),
    "bytes that are not a model": (lambda: b"not an onnx model", "bytes that are not a serialized ONNX model"),
    "empty bytes": (lambda: b"", "0 bytes with no ONNX graph"),
    "a graph-less ModelProto": (onnx.ModelProto, "an onnx.ModelProto with no ONNX graph"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_model_is_one_error_naming_the_forms(case, sample_npz):
    make, cause = BAD[case]
    for call in (lambda m: as_model(m), lambda m: evaluate(m, sample_npz), lambda m: localize(m, sample_npz)):
        with pytest.raises(OnnxFaultError) as err:
            call(make())
        message = str(err.value)
        assert message.startswith("model ") and cause in message and len(message.splitlines()) == 1
        assert "onnx.ModelProto, a torch.nn.Module (with example_input=), a Keras 3 model" in message


@pytest.mark.parametrize("example, said", [([[0.0] * 28] * 28, "example_input is a list"),
                                           (torch.rand(28), "example_input has shape (28,)"),
                                           (torch.rand(1, 3, 28, 28), "torch cannot export Sequential")])
def test_bad_example_input_leaves_no_temp_file(example, said, own_tmp):
    net = small_cnn().train()
    with pytest.raises(OnnxFaultError, match=said.replace("(", r"\(").replace(")", r"\)")):
        as_model(net, example_input=example)
    assert net.training and not os.listdir(own_tmp)


def test_forms_are_told_apart_without_importing_frameworks(dense_onnx):
    code = (f"import sys, onnx; from onnxfault import as_model, OnnxFaultError; p = {str(dense_onnx)!r}\n"
            "models = [as_model(p), as_model(open(p, 'rb').read()), as_model(onnx.load(p))]\n"
            "try: as_model(object())\nexcept OnnxFaultError as err: print(err)\n"
            "print(sorted({'torch', 'tensorflow', 'keras'} & set(sys.modules)), [m.num_classes for m in models])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["model has type object, none of the accepted forms; model must be a path to an "
                                ".onnx file, bytes of a serialized ONNX model, an onnx.ModelProto, a torch.nn.Module "
                                "(with example_input=), a Keras 3 model, or a loaded onnxfault.Model",
                                "[] [10, 10, 10]"]
