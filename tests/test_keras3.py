"""Keras 3 models → ONNX through Keras' own exporter (skipped without onnxfault[keras])."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tensorflow", reason="Keras 3 conversion needs onnxfault[keras] (TensorFlow)")


@pytest.fixture(scope="module")
def keras_model():
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((28, 28, 1), name="image")
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv1")(inp)
    x = keras.layers.MaxPooling2D(name="pool1")(x)
    x = keras.layers.Conv2D(6, 3, name="conv2")(x)
    x = keras.layers.LeakyReLU(negative_slope=0.1, name="leaky")(x)
    x = keras.layers.Flatten(name="flat")(x)
    x = keras.layers.Dense(16, activation="tanh", name="dense1")(x)
    return keras.Model(inp, keras.layers.Dense(10, name="scores")(x))


def test_keras_file_converts_with_layer_names(cli, keras_model, tmp_path):
    from onnxfault import load_model

    keras_model.save(tmp_path / "m.keras")
    result = cli("convert", tmp_path / "m.keras", "-o", tmp_path / "m.onnx")
    assert result.exit_code == 0, result.output
    assert "wrote" in result.stdout and "input  image" in result.stdout
    model = load_model(tmp_path / "m.onnx")
    assert [(l.tensor, l.op, l.neurons()) for l in model.layers] == [("conv1", "Relu", 4), ("leaky", "LeakyRelu", 6),
                                                                      ("dense1", "Tanh", 16)]
    x = np.random.default_rng(0).random((8, 28, 28, 1), dtype=np.float32)
    assert np.abs(model.session("cpu").run(x)[0] - keras_model.predict(x, verbose=0)).max() < 1e-5


def test_in_memory_model_that_never_ran(tmp_path):
    import keras

    from onnxfault.adapters import from_keras

    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3, activation="relu", name="hidden"),
                              keras.layers.Dense(2, name="out")])
    result = from_keras(model, tmp_path / "s.onnx")
    assert result.source_kind == "keras" and result.inputs[0][1][1:] == [5]


def test_corrupt_keras_file(cli, tmp_path):
    (tmp_path / "bad.keras").write_bytes(b"PK\x03\x04 not really a zip")
    result = cli("convert", tmp_path / "bad.keras", "-o", tmp_path / "bad.onnx")
    assert result.exit_code == 1 and result.stderr.startswith("error: Keras cannot load")
    assert not (tmp_path / "bad.onnx").exists()
