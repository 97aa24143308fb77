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


@pytest.fixture(scope="module")
def transformer_block(tmp_path_factory):
    """A Keras 3 CNN with LayerNormalization, exact GELU and a residual block, saved, converted by the CLI
    at the default opset, and labelled data (its own predictions, every fourth one wrong)."""
    import keras

    from conftest import run_cli

    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 3), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", name="conv")(inp)
    x = keras.layers.LayerNormalization(name="ln")(x)
    h = keras.layers.Dense(8, activation="gelu", name="mlp")(x)  # keras' gelu is exact (approximate=False)
    x = keras.layers.Add(name="residual")([x, h])
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    model = keras.Model(inp, keras.layers.Dense(10, name="scores")(x))
    folder = tmp_path_factory.mktemp("keras_block")
    model.save(folder / "m.keras")
    result = run_cli("convert", folder / "m.keras", "-o", folder / "m.onnx")
    assert result.exit_code == 0, result.output
    x = np.random.default_rng(0).random((24, 8, 8, 3), dtype=np.float32)
    y = model.predict(x, verbose=0).argmax(1)
    y[::4] = (y[::4] + 1) % 10
    np.savez(folder / "data.npz", x=x, y=y)
    return model, folder / "m.onnx", folder / "data.npz", x, y


def tf_loss_gradient(model, x, y):
    import tensorflow as tf

    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        scores = tf.cast(model(xt, training=False), tf.float64)
        loss = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(tf.constant(y), scores))
    return tape.gradient(loss, xt).numpy()


def test_gelu_layernorm_residual_end_to_end(transformer_block):
    from onnxfault import load_model, localize, synthesize
    from onnxfault.adapters.gradients import Differentiable

    keras_model, path, data, x, y = transformer_block
    model = load_model(path)
    assert np.abs(model.session("cpu").run(x)[0] - keras_model.predict(x, verbose=0)).max() < 1e-5
    assert {"Gelu", "LayerNormalization"} <= {layer.op for layer in model.layers}
    assert (localize(model, data, k=3).spectrum.counts.sum(axis=0) == len(x)).all()
    got, _ = Differentiable(model.scores_only(), "cpu").loss_gradient(x[:8], y[:8])
    want = tf_loss_gradient(keras_model, x[:8], y[:8])
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()
    fgsm = synthesize(model, data, method="fgsm", samples=1, device="cpu")
    a = fgsm.arrays
    low, high = fgsm.report["params"]["clip"]
    expected = np.clip(a["original"] + 0.1 * np.sign(tf_loss_gradient(keras_model, a["original"], a["labels"])), low, high)
    assert np.isclose(a["synthesized"], expected, atol=1e-6).mean() >= 0.999
    for method in ("pgd", "hs", "deepfault"):
        run = synthesize(model, data, method=method, samples=1, iterations=3 if method != "deepfault" else None,
                         distance=0.1, device="cpu")
        assert np.abs(run.arrays["synthesized"] - run.arrays["original"]).max() <= 0.1 + 1e-6


def test_unsupported_opset_is_one_line(cli, transformer_block, tmp_path):
    folder = transformer_block[1].parent
    result = cli("convert", folder / "m.keras", "-o", tmp_path / "m20.onnx", "--opset", "20")
    assert result.exit_code == 1 and not (tmp_path / "m20.onnx").exists()
    assert result.stderr.strip() == "error: Keras models convert at opsets 14-18 (what tf2onnx writes), not 20; choose one with --opset"
