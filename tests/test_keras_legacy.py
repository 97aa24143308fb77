"""Legacy Keras 2 models → ONNX: DeepFault's originals reach their published accuracy, and every supported
layer matches a float64 numpy forward pass (tests/keras_reference.py) to 1e-5."""
from __future__ import annotations

import json
import sys

import h5py
import numpy as np
import onnxruntime as ort
import pytest

from onnxfault import evaluate, load_model
from onnxfault.adapters import convert

import keras_reference
from conftest import SHARED

DEEPFAULT = SHARED / "deepfault-models"
ACCURACY = {  # ../shared/README.md, the DeepFault paper
    "mnist_test_model_5_30_leaky_relu": 0.9663, "mnist_test_model_6_25_leaky_relu": 0.9588,
    "mnist_test_model_8_20_leaky_relu": 0.9508, "mnist_test_model_3_50_relu": 0.9738, "lenet1": 0.9788,
}
rng = np.random.default_rng(7)


def run(path, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x.astype(np.float32)})[0]


@pytest.fixture
def deepfault():
    if not DEEPFAULT.is_dir():
        pytest.skip(f"needs DeepFault's models at {DEEPFAULT} (../shared/data beside the repo)")
    return DEEPFAULT


@pytest.mark.parametrize("name", sorted(ACCURACY))
def test_deepfault_models_reach_published_accuracy(deepfault, mnist_images, tmp_path, name):
    result = convert(deepfault / f"{name}.json", tmp_path / f"{name}.onnx")
    report = evaluate(result.path, mnist_images)
    assert report.samples == 10_000 and report.correct == round(ACCURACY[name] * 10_000)

    config, weights = keras_reference.read(deepfault / f"{name}.json", deepfault / f"{name}.h5")
    from deepfault_reference import read_mnist

    x, _ = read_mnist(mnist_images)
    x = x[:1000].transpose(0, 2, 3, 1) if name == "lenet1" else x[:1000]  # lenet1 is channels_last
    want = keras_reference.forward(config, weights, x)
    assert np.abs(run(result.path, x) - want).max() < 1e-5


def test_deepfault_layer_names(deepfault, tmp_path):
    model = load_model(convert(deepfault / "mnist_test_model_5_30_leaky_relu.json", tmp_path / "m.onnx").path)
    assert model.output_name == "dense_6"
    assert [(l.tensor, l.op, l.shape) for l in model.layers] == [(f"leaky_re_lu_{i}", "LeakyRelu", (30,)) for i in range(1, 6)]
    lenet = load_model(convert(deepfault / "lenet1.json", tmp_path / "l.onnx").path)
    assert [(l.tensor, l.shape, l.neurons()) for l in lenet.layers] == [
        ("block1_conv1", (28, 28, 4), 4), ("block2_conv1", (14, 14, 12), 12)]  # channels_last, 1 neuron per channel


# ---- synthetic models covering every supported layer ------------------------------------------------
def layer(cls, name, **config):
    return {"class_name": cls, "config": {"name": name, **config}}


def sequential_channels_first():
    layers = [
        layer("Conv2D", "c1", filters=4, kernel_size=[3, 3], strides=[1, 1], padding="same", data_format="channels_first",
              dilation_rate=[1, 1], activation="relu", use_bias=True, batch_input_shape=[None, 2, 9, 9]),
        layer("BatchNormalization", "bn", axis=1, epsilon=1e-3, center=True, scale=True),
        layer("MaxPooling2D", "p1", pool_size=[2, 2], strides=[2, 2], padding="same", data_format="channels_first"),
        layer("Conv2D", "c2", filters=3, kernel_size=[2, 3], strides=[2, 1], padding="valid", data_format="channels_first",
              dilation_rate=[1, 1], activation="tanh", use_bias=False),
        layer("ZeroPadding2D", "zp", padding=[[1, 0], [0, 2]], data_format="channels_first"),
        layer("Flatten", "f", data_format="channels_first"),
        layer("Dense", "d1", units=7, activation="elu", use_bias=True),
        layer("Dropout", "dr", rate=0.5),
        layer("PReLU", "pr"),
        layer("Dense", "d2", units=5, activation="linear", use_bias=True),
        layer("Softmax", "sm", axis=-1),
    ]
    weights = {
        "c1": {"kernel": rng.standard_normal((3, 3, 2, 4)), "bias": rng.standard_normal(4)},
        "bn": {"gamma": rng.random(4) + 0.5, "beta": rng.standard_normal(4), "moving_mean": rng.standard_normal(4),
               "moving_variance": rng.random(4) + 0.1},
        "c2": {"kernel": rng.standard_normal((2, 3, 4, 3))},
        "d1": {"kernel": rng.standard_normal((45, 7)), "bias": rng.standard_normal(7)},
        "pr": {"alpha": rng.random(7)},
        "d2": {"kernel": rng.standard_normal((7, 5)), "bias": rng.standard_normal(5)},
    }
    return {"class_name": "Sequential", "config": layers, "keras_version": "2.1.3"}, weights, (2, 9, 9)


def functional_channels_last():
    def node(name, cls, inbound, **config):
        return {**layer(cls, name, **config), "name": name, "inbound_nodes": [[[i, 0, 0, {}] for i in inbound]]}

    layers = [
        {**layer("InputLayer", "inp", batch_input_shape=[None, 8, 8, 3]), "name": "inp", "inbound_nodes": []},
        node("a", "Conv2D", ["inp"], filters=4, kernel_size=[3, 3], strides=[1, 1], padding="same",
             dilation_rate=[2, 2], activation="relu", use_bias=True, data_format="channels_last"),
        node("b", "Conv2D", ["inp"], filters=4, kernel_size=[1, 1], strides=[1, 1], padding="valid",
             dilation_rate=[1, 1], activation="linear", use_bias=True, data_format="channels_last"),
        node("s", "Add", ["a", "b"]),
        node("c", "Concatenate", ["s", "a"], axis=-1),
        node("p", "AveragePooling2D", ["c"], pool_size=[3, 3], strides=[2, 2], padding="same", data_format="channels_last"),
        node("r", "ReLU", ["p"], max_value=0.5),
        node("g", "GlobalAveragePooling2D", ["r"], data_format="channels_last"),
        node("m", "GlobalMaxPooling2D", ["c"], data_format="channels_last"),
        node("k", "Concatenate", ["g", "m"], axis=-1),
        node("rs", "Reshape", ["k"], target_shape=[4, -1]),
        node("fl", "Flatten", ["rs"], data_format="channels_last"),
        node("lr", "LeakyReLU", ["fl"], alpha=0.2),
        node("e", "ELU", ["lr"], alpha=0.5),
        node("act", "Activation", ["e"], activation="sigmoid"),
        node("out", "Dense", ["act"], units=6, activation="softmax", use_bias=True),
    ]
    weights = {
        "a": {"kernel": rng.standard_normal((3, 3, 3, 4)), "bias": rng.standard_normal(4)},
        "b": {"kernel": rng.standard_normal((1, 1, 3, 4)), "bias": rng.standard_normal(4)},
        "out": {"kernel": rng.standard_normal((16, 6)), "bias": rng.standard_normal(6)},
    }
    config = {"class_name": "Model", "keras_version": "2.2.4",
              "config": {"name": "m", "layers": layers, "input_layers": [["inp", 0, 0]], "output_layers": [["out", 0, 0]]}}
    return config, weights, (8, 8, 3)


def write_h5(path, weights, model_config=None):
    with h5py.File(path, "w") as fh:
        root = fh.create_group("model_weights") if model_config else fh
        if model_config:
            fh.attrs["model_config"] = json.dumps(model_config).encode()
        root.attrs["layer_names"] = [n.encode() for n in weights]
        for name, variables in weights.items():
            group = root.create_group(name)
            group.attrs["weight_names"] = [f"{name}/{v}:0".encode() for v in variables]
            for v, value in variables.items():
                group[f"{name}/{v}:0"] = np.asarray(value, np.float32)
    return path


def write_model(tmp_path, config, weights):
    (tmp_path / "model.json").write_text(json.dumps(config))
    write_h5(tmp_path / "model.h5", weights)
    return tmp_path / "model.json"


MODELS = {"sequential-channels-first": sequential_channels_first, "functional-channels-last": functional_channels_last}


@pytest.mark.parametrize("opset", [13, 17, 21])
@pytest.mark.parametrize("builder", sorted(MODELS))
def test_every_layer_matches_numpy(tmp_path, builder, opset):
    config, weights, shape = MODELS[builder]()
    result = convert(write_model(tmp_path, config, weights), tmp_path / "m.onnx", opset=opset)
    assert load_model(result.path).opset == opset
    x = rng.random((16, *shape)).astype(np.float32)
    as_float32 = {l: {k: v.astype(np.float32) for k, v in w.items()} for l, w in weights.items()}
    want = keras_reference.forward(config, as_float32, x)
    got = run(result.path, x)
    assert got.shape == want.shape and np.abs(got - want).max() < 1e-5


def test_keras_2_2_sequential_dict_and_single_file_h5(tmp_path):
    config, weights, shape = sequential_channels_first()
    dict_config = {**config, "config": {"name": "seq", "layers": config["config"]}}
    single = write_h5(tmp_path / "full.h5", weights, model_config=dict_config)
    x = rng.random((4, *shape)).astype(np.float32)
    from_json = run(convert(write_model(tmp_path, config, weights), tmp_path / "a.onnx").path, x)
    from_h5 = run(convert(single, tmp_path / "b.onnx").path, x)
    assert np.array_equal(from_json, from_h5)


def test_layer_names_and_candidates(tmp_path):
    config, weights, _ = sequential_channels_first()
    model = load_model(convert(write_model(tmp_path, config, weights), tmp_path / "m.onnx").path)
    names = {v.name for v in model.proto.graph.value_info} | {model.output_name}
    assert {"c1", "bn", "p1", "c2", "zp", "f", "d1", "dr", "pr", "d2", "sm"} <= names
    assert [(l.tensor, l.op) for l in model.layers] == [("c1", "Relu"), ("c2", "Tanh"), ("d1", "Elu"), ("pr", "PRelu")]


# ---- bad input --------------------------------------------------------------------------------------
def one_line_error(cli, *args):
    result = cli("convert", *args)
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


def test_bad_keras_sources(cli, tmp_path):
    config, weights, _ = sequential_channels_first()
    out = tmp_path / "out.onnx"
    (tmp_path / "alone.json").write_text(json.dumps(config))
    assert "no weights file" in one_line_error(cli, tmp_path / "alone.json", "-o", out)

    missing = {k: v for k, v in weights.items() if k != "d1"}
    (tmp_path / "partial.json").write_text(json.dumps(config))
    write_h5(tmp_path / "partial.h5", missing)
    assert "has no weights for layer 'd1' (Dense)" in one_line_error(cli, tmp_path / "partial.json", "-o", out)

    odd = {**config, "config": config["config"][:1] + [layer("Conv3D", "c3", filters=2)] + config["config"][1:]}
    (tmp_path / "odd.json").write_text(json.dumps(odd))
    write_h5(tmp_path / "odd.h5", weights)
    assert "unsupported Keras layer Conv3D 'c3'" in one_line_error(cli, tmp_path / "odd.json", "-o", out)

    (tmp_path / "corrupt.json").write_text(json.dumps(config))
    (tmp_path / "corrupt.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(200))
    assert "cannot read" in one_line_error(cli, tmp_path / "corrupt.json", "-o", out)

    write_h5(tmp_path / "weights_only.h5", weights)
    assert "holds weights but no architecture" in one_line_error(cli, tmp_path / "weights_only.h5", "-o", out)

    write_model(tmp_path, config, weights)
    assert "folder" in one_line_error(cli, tmp_path / "model.json", "-o", tmp_path / "no" / "dir" / "m.onnx")
    assert "cannot tell what kind of model" in one_line_error(cli, tmp_path / "model.txt", "-o", out)
    assert "--opset 9 is not supported" in one_line_error(cli, tmp_path / "model.json", "-o", out, "--opset", "9")
    assert not out.exists() and not list(tmp_path.glob(".out.onnx*"))


def test_keras3_source_without_tensorflow(cli, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "keras", None)  # as if TensorFlow/Keras were not installed
    monkeypatch.setitem(sys.modules, "tensorflow", None)
    (tmp_path / "m.keras").write_bytes(b"PK")
    message = one_line_error(cli, tmp_path / "m.keras", "-o", tmp_path / "m.onnx")
    assert 'pip install "onnxfault[keras]"' in message
