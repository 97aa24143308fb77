"""Keras 3 models nobody here wrote: ``keras.applications`` (``weights=None``, seeded, 32×32 inputs, nothing
downloaded) and a small model with the two constructs that stopped them (a ``Normalization`` layer's captured
mean and variance; a grouped convolution), converted by ``onnxfault convert`` and checked against Keras itself:
outputs in float32, the adapter's input gradient against TensorFlow's in float64."""
from __future__ import annotations

import os

import numpy as np
import onnx
import pytest

pytest.importorskip("tensorflow", reason="Keras 3 conversion needs onnxfault[keras] (TensorFlow)")
torch = pytest.importorskip("torch")

import onnxfault  # noqa: E402

APPLICATIONS = ("MobileNet", "MobileNetV2", "MobileNetV3Small", "EfficientNetB0")  # quick at 32×32; see README


def keras():
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras as k

    return k


def float64_twin(build, model):
    """``build()`` under float64, holding ``model``'s weights: TensorFlow's reference in float64. Keras 3 layers
    compute in their dtype policy's type, which ``set_floatx`` alone leaves at float32."""
    k = keras()
    k.config.set_floatx("float64")
    k.config.set_dtype_policy("float64")
    try:
        twin = build()
    finally:
        k.config.set_floatx("float32")
        k.config.set_dtype_policy("float32")
    assert twin.compute_dtype == "float64", twin.compute_dtype
    twin.set_weights([w.astype(np.float64) for w in model.get_weights()])
    return twin


def gradients_agree(onnx_path, twin, x: np.ndarray, cls: int = 0) -> float:
    """The largest difference between the input gradients of class ``cls``'s summed score from TensorFlow (the
    float64 ``twin``) and from the ONNX→torch adapter in float64, relative to the largest gradient element."""
    import tensorflow as tf

    from onnxfault.adapters.onnx2torch import to_torch

    xt = tf.constant(x.astype(np.float64))
    with tf.GradientTape() as tape:
        tape.watch(xt)
        score = tf.reduce_sum(twin(xt, training=False)[:, cls])
    want = tape.gradient(score, xt).numpy()
    module = to_torch(onnxfault.load_model(onnx_path).scores_only()).double()
    inputs = torch.from_numpy(x.astype(np.float64)).requires_grad_(True)
    module(inputs)[0][:, cls].sum().backward()
    got = inputs.grad.numpy()
    return float(np.abs(got - want).max() / np.abs(want).max())


def plain_fgsm(model, x: np.ndarray, labels: np.ndarray, distance: float, low: float, high: float) -> np.ndarray:
    """FGSM on the Keras model itself in TensorFlow: one sign step of the cross-entropy of the true labels."""
    import tensorflow as tf

    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        scores = tf.cast(model(xt, training=False), tf.float64)
        loss = -tf.reduce_sum(tf.math.log(tf.gather(tf.maximum(scores, 1e-12), labels, batch_dims=1)))
    step = np.sign(tape.gradient(loss, xt).numpy())
    return np.clip(np.clip(x + distance * step, x - distance, x + distance), low, high).astype(np.float32)


def convert_and_check(cli, build, path, tmp_path, rng):
    """Save the model ``build()`` as .keras, convert it with the CLI; its outputs equal Keras'; no graph input but
    the image; inspect, localize and fgsm run; FGSM equals a plain TensorFlow FGSM on ≥ 99.9 % of elements;
    the adapter's float64 gradient matches TensorFlow's to 1e-4 relative."""
    k = keras()
    k.utils.set_random_seed(0)
    model = build()
    model.save(path.with_suffix(".keras"))
    result = cli("convert", path.with_suffix(".keras"), "-o", path)
    assert result.exit_code == 0, result.output
    proto = onnx.load(str(path))
    assert len([i for i in proto.graph.input if i.name not in {t.name for t in proto.graph.initializer}]) == 1
    x = rng.random((24, 32, 32, 3), dtype=np.float32)
    loaded = onnxfault.load_model(path)
    scores = loaded.session("cpu").run(x)[0]
    assert np.abs(scores - model.predict(x, verbose=0)).max() < 1e-4
    labels = scores.argmax(1)  # its own predictions: every sample correctly classified, so every one is a seed
    assert onnxfault.inspect_model(path)["layers"]
    assert onnxfault.localize(path, (x, labels), k=3).spectrum.samples == len(x)
    run = onnxfault.synthesize(path, (x, labels), method="fgsm", samples=2, distance=0.03, clip_min=0.0, clip_max=1.0)
    seeds = np.asarray(run.report["seeds"]["indices"])
    want = plain_fgsm(model, x[seeds], labels[seeds], 0.03, 0.0, 1.0)
    assert np.mean(np.isclose(run.arrays["synthesized"], want, rtol=0, atol=1e-6)) >= 0.999
    assert gradients_agree(path, float64_twin(build, model), x[:4].astype(np.float64)) < 1e-4
    return loaded


def test_captured_normalization_constants_and_grouped_convolutions_convert(cli, tmp_path):
    """A Normalization layer (adapted: its mean and variance are constants the export captures) and a grouped
    convolution (which Keras runs through XLA): before, the first became two graph inputs and the second a
    TensorFlow call onnxruntime cannot run. Now both convert and agree with Keras."""
    k = keras()
    data = np.random.default_rng(1).random((64, 32, 32, 3), dtype=np.float32)

    def build():
        inp = k.Input((32, 32, 3), name="image")
        norm = k.layers.Normalization(name="norm")
        norm.adapt(data)
        x = k.layers.Conv2D(8, 3, activation="relu", name="conv")(norm(inp))
        x = k.layers.Conv2D(8, 3, groups=8, activation="gelu", name="depthwise")(x)
        x = k.layers.GlobalAveragePooling2D(name="pool")(x)
        return k.Model(inp, k.layers.Dense(5, activation="softmax", name="scores")(x))

    loaded = convert_and_check(cli, build, tmp_path / "small.onnx", tmp_path, np.random.default_rng(0))
    ops = {n.op_type for n in loaded.proto.graph.node}
    assert "Conv" in ops and not any(op.startswith(("StatefulPartitioned", "PartitionedCall")) for op in ops)


@pytest.mark.parametrize("name", APPLICATIONS)
def test_keras_applications_convert_and_agree_with_tensorflow(cli, tmp_path, name):
    k = keras()
    build = lambda: getattr(k.applications, name)(weights=None, classes=10, input_shape=(32, 32, 3))  # noqa: E731
    convert_and_check(cli, build, tmp_path / f"{name}.onnx", tmp_path, np.random.default_rng(0))


def test_name_scope_outputs_leaves_undecodable_string_attributes_alone():
    """tf2onnx can leave a string attribute that is not UTF-8 (TensorFlow's serialized config_proto): the renaming
    works on the protobuf, keeps those bytes as they are, and still renames the scopes' outputs."""
    from onnx import TensorProto, helper

    from onnxfault.graph import name_scope_outputs

    odd = helper.make_node("Identity", ["x"], ["a"], name="model/layer_a/Identity")
    odd.attribute.append(helper.make_attribute("config_proto", b"\n\x07\x82\x01\x00"))
    nodes = [odd, helper.make_node("Relu", ["a"], ["y"], name="model/layer_b/Relu")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    renamed = name_scope_outputs(helper.make_model(graph), lambda node: node.split("/")[1])
    assert [list(n.output) for n in renamed.graph.node] == [["layer_a"], ["y"]]
    assert list(renamed.graph.node[1].input) == ["layer_a"]
    assert renamed.graph.node[0].attribute[0].s == b"\n\x07\x82\x01\x00"
