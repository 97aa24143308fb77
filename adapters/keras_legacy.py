"""Legacy Keras 2.x models (``.json`` + ``.h5`` weights, or one ``.h5`` from ``model.save``) → ONNX,
without TensorFlow.

Tensors keep Keras' own layouts (channels_last convolutions get a Transpose to NCHW and back around the
ONNX op), and every layer's output tensor is named after the Keras layer (``dense_3``,
``leaky_re_lu_2``), so a layer can be named in ``--layers``. Weights are read by each layer's
``weight_names`` attribute, never by position.

Both JSON generations are read: Keras ≤ 2.1 ``Sequential`` whose ``config`` is a list, and ≥ 2.2
``Sequential``/``Model`` dicts (functional graphs with ``inbound_nodes``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from onnxfault.errors import OnnxFaultError, regular_file

from .h5_weights import H5Weights

MIN_OPSET, MAX_OPSET = 13, 21


@dataclass
class KerasLayer:
    """One layer of the architecture: class, config, the layers it reads from, and its weights by name."""

    cls: str
    name: str
    config: dict
    inbound: list[str]
    weights: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class KerasArchitecture:
    layers: list[KerasLayer]  # in a valid evaluation order
    inputs: list[str]
    outputs: list[str]
    input_shapes: dict[str, tuple[int, ...]]  # per sample


# ---- reading (I/O) ----------------------------------------------------------------------------------
def read_architecture(config: dict) -> KerasArchitecture:
    """Layers, inputs and outputs from a Keras 2 ``model.to_json()`` dict."""
    cls, body = config.get("class_name"), config.get("config")
    if cls == "Sequential":
        layers = body if isinstance(body, list) else body.get("layers", [])
        return _sequential(layers)
    if cls in ("Model", "Functional"):
        return _functional(body)
    raise OnnxFaultError(f"unsupported Keras model class '{cls}'; onnxfault reads Sequential and Model")


def _sequential(entries: list[dict]) -> KerasArchitecture:
    if not entries:
        raise OnnxFaultError("the Keras Sequential model has no layers")
    first = entries[0]["config"]
    shape = first.get("batch_input_shape")
    if not shape:
        raise OnnxFaultError("the first Keras layer has no batch_input_shape; the input size is unknown")
    if entries[0]["class_name"] == "InputLayer":
        input_name, entries = first["name"], entries[1:]
    else:
        input_name = f"{first['name']}_input"
    layers, previous = [], input_name
    for entry in entries:
        layers.append(KerasLayer(entry["class_name"], entry["config"]["name"], entry["config"], [previous]))
        previous = layers[-1].name
    return KerasArchitecture(layers, [input_name], [previous], {input_name: tuple(shape[1:])})


def _functional(body: dict) -> KerasArchitecture:
    layers, shapes = [], {}
    for entry in body["layers"]:
        name, cls = entry["config"]["name"], entry["class_name"]
        if cls == "InputLayer":
            shapes[name] = tuple(entry["config"]["batch_input_shape"][1:])
            continue
        nodes = entry.get("inbound_nodes") or []
        if len(nodes) != 1:
            raise OnnxFaultError(f"Keras layer '{name}' is called {len(nodes)} times; shared layers are not supported")
        inbound = [item[0] for item in nodes[0]]
        if any(item[2] != 0 for item in nodes[0]):
            raise OnnxFaultError(f"Keras layer '{name}' reads a second output of a layer; not supported")
        layers.append(KerasLayer(cls, name, entry["config"], inbound))
    return KerasArchitecture(layers, [i[0] for i in body["input_layers"]], [o[0] for o in body["output_layers"]], shapes)


def read_weights(h5: H5Weights, group, architecture: KerasArchitecture, where: str) -> None:
    """Attach each layer's weights from an h5 group (``/<layer>/…`` datasets listed by ``weight_names``)."""
    for layer in architecture.layers:
        layer_group = h5.lookup(group, layer.name)
        if layer_group is not None:
            for raw in layer_group.attrs.get("weight_names", []):
                name = raw.decode() if isinstance(raw, bytes) else str(raw)
                key = name.split("/")[-1].split(":")[0]
                dataset = h5.lookup(layer_group, name)
                if dataset is None:
                    raise OnnxFaultError(f"{where} lists weight '{name}' of layer '{layer.name}' but does not hold it; "
                                         "pass the .h5 saved from this model")
                layer.weights[key] = h5.read(dataset, f"weight '{name}' in {where}")
        if _needs_weights(layer) and not layer.weights:
            raise OnnxFaultError(f"{where} has no weights for layer '{layer.name}' ({layer.cls}); "
                                 "pass the .h5 saved from this model")


def _needs_weights(layer: KerasLayer) -> bool:
    return layer.cls in ("Dense", "Conv2D", "PReLU", "BatchNormalization")


def load_legacy_keras(source: str | Path, weights: str | Path | None = None) -> KerasArchitecture:
    """Architecture + weights from ``model.json`` (+ ``model.h5`` beside it, or ``weights``) or one ``.h5``."""
    source = Path(source)
    if not source.exists():
        raise OnnxFaultError(f"Keras model file {source} does not exist; check the path")
    regular_file(source, "give the file itself", where="Keras model file ")
    if source.suffix.lower() == ".json":
        try:
            text = source.read_bytes()
        except OSError as err:
            raise OnnxFaultError(f"cannot read {source}: {err.strerror or err}") from None
        weights = Path(weights) if weights else source.with_suffix(".h5")
        architecture = _parse_architecture(text, str(source))
        if not weights.exists():
            raise OnnxFaultError(f"no weights file {weights} beside {source.name}; pass --weights PATH")
        with H5Weights(weights) as h5:
            _read_weights_of(h5, architecture, str(weights))
        return architecture
    with H5Weights(source) as h5:
        if "model_config" not in h5.root.attrs:
            raise OnnxFaultError(f"{source} holds weights but no architecture (saved with save_weights); "
                                 "convert the model's .json and pass this file with --weights")
        architecture = _parse_architecture(h5.root.attrs["model_config"], f"the model_config of {source}")
        _read_weights_of(h5, architecture, str(source))
    return architecture


# What malformed JSON or HDF5 content raises while it is read as a Keras model (wrong types, missing keys).
_MALFORMED = (KeyError, IndexError, TypeError, AttributeError, ValueError, RecursionError)


def _parse_architecture(raw, where: str) -> KerasArchitecture:
    """The architecture in ``raw`` (JSON text), any malformation reported in one line."""
    try:
        config = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
        if not isinstance(config, dict):
            raise TypeError(f"the top level is a {type(config).__name__}, not an object")
        return read_architecture(config)
    except _MALFORMED as err:
        raise OnnxFaultError(f"{where} is not Keras model JSON ({_describe(err)}); give model.to_json() output") from None


def _read_weights_of(h5: H5Weights, architecture: KerasArchitecture, where: str) -> None:
    try:
        group = h5.lookup(h5.root, "model_weights")
        read_weights(h5, h5.root if group is None else group, architecture, where)
    except (*_MALFORMED, OSError) as err:
        raise OnnxFaultError(f"cannot read the weights in {where} ({_describe(err)}); pass the .h5 saved from this "
                             "model") from None


def _describe(err: Exception) -> str:
    if isinstance(err, RecursionError):
        return "nested too deeply"
    if isinstance(err, KeyError):
        return f"missing key {err}"
    text = str(err).splitlines()[0] if str(err) else ""
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


# ---- building the ONNX graph (math only) -------------------------------------------------------------
class _Graph:
    """Collects nodes and initializers; each ``op`` call returns the output tensor's name."""

    def __init__(self, opset: int):
        self.opset = opset
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []

    def const(self, name: str, value) -> str:
        self.initializers.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(self, op_type: str, inputs: list[str], output: str, **attrs) -> str:
        self.nodes.append(helper.make_node(op_type, inputs, [output], name=output, **attrs))
        return output

    def name_output(self, tensor: str, name: str) -> None:
        """Give ``tensor`` the name ``name``: rename it if the last node made it, else add an Identity."""
        if tensor == name:
            return
        last = self.nodes[-1] if self.nodes else None
        if last is not None and list(last.output) == [tensor]:
            last.output[0] = last.name = name
        else:
            self.op("Identity", [tensor], name)

    def reduce(self, op_type: str, x: str, axes: list[int], output: str) -> str:
        if self.opset >= 18:
            return self.op(op_type, [x, self.const(f"{output}/axes", np.asarray(axes, np.int64))], output, keepdims=0)
        return self.op(op_type, [x], output, axes=axes, keepdims=0)


_ACTIVATIONS = {
    "relu": ("Relu", {}), "sigmoid": ("Sigmoid", {}), "tanh": ("Tanh", {}), "softmax": ("Softmax", {"axis": -1}),
    "elu": ("Elu", {"alpha": 1.0}), "selu": ("Selu", {}), "softplus": ("Softplus", {}),
    "softsign": ("Softsign", {}), "hard_sigmoid": ("HardSigmoid", {"alpha": 0.2, "beta": 0.5}),
    "exponential": ("Exp", {}),
}


def _activation(g: _Graph, name: str, x: str, output: str, layer: KerasLayer) -> str:
    if name in (None, "linear"):
        return x
    if name not in _ACTIVATIONS:
        raise OnnxFaultError(f"unsupported activation '{name}' in Keras layer '{layer.name}' ({layer.cls})")
    op_type, attrs = _ACTIVATIONS[name]
    return g.op(op_type, [x], output, **attrs)


def _pair(value) -> list[int]:
    return [int(value)] * 2 if isinstance(value, (int, float)) else [int(v) for v in value]


def _channels_last(layer: KerasLayer) -> bool:
    return layer.config.get("data_format", "channels_last") != "channels_first"


def _to_nchw(g: _Graph, x: str, layer: KerasLayer) -> str:
    return g.op("Transpose", [x], f"{layer.name}/to_nchw", perm=[0, 3, 1, 2]) if _channels_last(layer) else x


def _from_nchw(g: _Graph, x: str, layer: KerasLayer, output: str) -> str:
    return g.op("Transpose", [x], output, perm=[0, 2, 3, 1]) if _channels_last(layer) else x


def _spatial_out(size: int, kernel: int, stride: int, dilation: int, padding: str) -> int:
    if padding == "same":
        return -(-size // stride)
    return (size - dilation * (kernel - 1) - 1) // stride + 1


def _pads(shape, layer: KerasLayer, kernel, strides, dilation) -> list[int]:
    """Explicit ONNX pads (begin h, w, end h, w) for TF's 'same' (the extra cell goes at the end); onnxruntime
    does not combine auto_pad with dilation."""
    if layer.config.get("padding", "valid") != "same":
        return [0, 0, 0, 0]
    spatial = (shape[0], shape[1]) if _channels_last(layer) else (shape[1], shape[2])
    totals = [max((-(-n // s) - 1) * s + (k - 1) * d + 1 - n, 0)
              for n, k, s, d in zip(spatial, kernel, strides, dilation)]
    return [t // 2 for t in totals] + [t - t // 2 for t in totals]


def _conv_like_shape(shape, layer: KerasLayer, kernel, strides, dilation, channels: int | None):
    last = _channels_last(layer)
    h, w, c = (shape[0], shape[1], shape[2]) if last else (shape[1], shape[2], shape[0])
    oh = _spatial_out(h, kernel[0], strides[0], dilation[0], layer.config.get("padding", "valid"))
    ow = _spatial_out(w, kernel[1], strides[1], dilation[1], layer.config.get("padding", "valid"))
    c = channels or c
    return (oh, ow, c) if last else (c, oh, ow)


def _setting(layer: KerasLayer, key: str, default=None) -> int:
    """A positive whole-number setting of ``layer``'s config (units, filters), refused when it is not one."""
    value = layer.config.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise OnnxFaultError(f"Keras layer '{layer.name}' ({layer.cls}) has {key} {value!r}, not a positive "
                             "whole number; check the model's .json")
    return value


def _weight(layer: KerasLayer, key: str, shape: tuple[int, ...]) -> np.ndarray:
    """The weight ``key`` of ``layer``, which must have the shape that the layer's config and input imply."""
    value = layer.weights.get(key)
    if value is None:
        raise OnnxFaultError(f"the weights of {layer.cls} layer '{layer.name}' have no {key}; "
                             "pass the .h5 saved from this model")
    if tuple(value.shape) != tuple(shape):
        raise OnnxFaultError(f"the {key} of {layer.cls} layer '{layer.name}' has shape {tuple(value.shape)}, but the "
                             f"layer's config and input need {tuple(shape)}; pass the .h5 saved with this .json")
    return value


def _dense(g, layer, inputs, shape):
    x = inputs[0]
    units = _setting(layer, "units")
    w = _weight(layer, "kernel", (shape[-1], units))
    out = g.op("MatMul", [x, g.const(f"{layer.name}/kernel", w)], f"{layer.name}/MatMul")
    if layer.config.get("use_bias", True):
        bias = _weight(layer, "bias", (units,))
        out = g.op("Add", [out, g.const(f"{layer.name}/bias", bias)], f"{layer.name}/BiasAdd")
    return _activation(g, layer.config.get("activation"), out, layer.name, layer), (*shape[:-1], units)


def _conv2d(g, layer, inputs, shape):
    x = inputs[0]
    cfg = layer.config
    if cfg.get("groups", 1) != 1:
        raise OnnxFaultError(f"Conv2D layer '{layer.name}' is grouped (groups {cfg['groups']}); not supported")
    filters = _setting(layer, "filters")
    size = _pair(cfg.get("kernel_size", 1))
    channels = shape[2] if _channels_last(layer) else shape[0]
    kernel = _weight(layer, "kernel", (*size, channels, filters))  # (kh, kw, in, out)
    strides, dilation = _pair(cfg.get("strides", 1)), _pair(cfg.get("dilation_rate", 1))
    padding = cfg.get("padding", "valid")
    if padding not in ("valid", "same"):
        raise OnnxFaultError(f"unsupported padding '{padding}' in Conv2D layer '{layer.name}'")
    inputs = [_to_nchw(g, x, layer), g.const(f"{layer.name}/kernel", kernel.transpose(3, 2, 0, 1))]
    if cfg.get("use_bias", True):
        inputs.append(g.const(f"{layer.name}/bias", _weight(layer, "bias", (filters,))))
    out = g.op("Conv", inputs, f"{layer.name}/Conv", kernel_shape=list(kernel.shape[:2]), strides=strides,
               dilations=dilation, pads=_pads(shape, layer, kernel.shape[:2], strides, dilation))
    out = _from_nchw(g, out, layer, f"{layer.name}/BiasAdd")
    shape = _conv_like_shape(shape, layer, kernel.shape[:2], strides, dilation, kernel.shape[3])
    return _activation(g, cfg.get("activation"), out, layer.name, layer), shape


def _pool(g, layer, inputs, shape):
    x = inputs[0]
    cfg = layer.config
    size = _pair(cfg.get("pool_size", 2))
    strides = _pair(cfg.get("strides") or size)
    if cfg.get("padding", "valid") not in ("valid", "same"):
        raise OnnxFaultError(f"unsupported padding '{cfg['padding']}' in {layer.cls} layer '{layer.name}'")
    op_type = "MaxPool" if layer.cls == "MaxPooling2D" else "AveragePool"
    out = g.op(op_type, [_to_nchw(g, x, layer)], f"{layer.name}/{op_type}", kernel_shape=size, strides=strides,
               pads=_pads(shape, layer, size, strides, [1, 1]))
    return _from_nchw(g, out, layer, layer.name), _conv_like_shape(shape, layer, size, strides, [1, 1], None)


def _global_pool(g, layer, inputs, shape):
    x = inputs[0]
    axes = [1, 2] if _channels_last(layer) else [2, 3]
    op_type = "ReduceMean" if layer.cls == "GlobalAveragePooling2D" else "ReduceMax"
    return g.reduce(op_type, x, axes, layer.name), (shape[2] if _channels_last(layer) else shape[0],)


def _flatten(g, layer, inputs, shape):
    x = inputs[0]
    if len(shape) >= 2 and layer.config.get("data_format") == "channels_first":
        # Keras ≥ 2.2 flattens channels_first tensors in channels-last order.
        x = g.op("Transpose", [x], f"{layer.name}/to_channels_last", perm=[0, *range(2, len(shape) + 1), 1])
    return g.op("Flatten", [x], layer.name, axis=1), (int(np.prod(shape)),)


def _reshape(g, layer, inputs, shape):
    x = inputs[0]
    target = list(layer.config["target_shape"])
    if -1 in target:
        known = int(np.prod([d for d in target if d != -1]))
        target[target.index(-1)] = int(np.prod(shape)) // known
    return g.op("Reshape", [x, g.const(f"{layer.name}/shape", np.asarray([-1, *target], np.int64))], layer.name), tuple(target)


def _batch_norm(g, layer, inputs, shape):
    x = inputs[0]
    cfg, w = layer.config, layer.weights
    axis = cfg.get("axis", -1)
    axis = axis if isinstance(axis, int) else axis[0]
    axis = axis - 1 if axis > 0 else len(shape) + axis  # per-sample axis
    channels = shape[axis]
    gamma = _weight(layer, "gamma", (channels,)) if "gamma" in w else np.ones(channels, np.float32)
    beta = _weight(layer, "beta", (channels,)) if "beta" in w else np.zeros(channels, np.float32)
    variance = _weight(layer, "moving_variance", (channels,)).astype(np.float64)
    scale = (gamma / np.sqrt(variance + cfg.get("epsilon", 1e-3))).astype(np.float32)
    shift = (beta - _weight(layer, "moving_mean", (channels,)) * scale).astype(np.float32)
    view = [1] * len(shape)
    view[axis] = channels
    out = g.op("Mul", [x, g.const(f"{layer.name}/scale", scale.reshape(view))], f"{layer.name}/Mul")
    return g.op("Add", [out, g.const(f"{layer.name}/shift", shift.reshape(view))], layer.name), shape


def _zero_pad(g, layer, inputs, shape):
    x = inputs[0]
    padding = layer.config.get("padding", 1)
    if isinstance(padding, int):
        (top, bottom), (left, right) = (padding, padding), (padding, padding)
    elif isinstance(padding[0], int):
        (top, bottom), (left, right) = (padding[0],) * 2, (padding[1],) * 2
    else:
        (top, bottom), (left, right) = padding
    if _channels_last(layer):
        pads, out_shape = [0, top, left, 0, 0, bottom, right, 0], (shape[0] + top + bottom, shape[1] + left + right, shape[2])
    else:
        pads, out_shape = [0, 0, top, left, 0, 0, bottom, right], (shape[0], shape[1] + top + bottom, shape[2] + left + right)
    return g.op("Pad", [x, g.const(f"{layer.name}/pads", np.asarray(pads, np.int64))], layer.name), out_shape


def _simple_activation(g, layer, inputs, shape):
    x = inputs[0]
    cfg = layer.config
    if layer.cls == "Activation":
        return _activation(g, cfg["activation"], x, layer.name, layer), shape
    if layer.cls == "LeakyReLU":
        return g.op("LeakyRelu", [x], layer.name, alpha=float(cfg.get("alpha", cfg.get("negative_slope", 0.3)))), shape
    if layer.cls == "ELU":
        return g.op("Elu", [x], layer.name, alpha=float(cfg.get("alpha", 1.0))), shape
    if layer.cls == "Softmax":
        return g.op("Softmax", [x], layer.name, axis=int(cfg.get("axis", -1))), shape
    if layer.cls == "PReLU":
        shared = cfg.get("shared_axes") or []
        shared = [shared] if isinstance(shared, int) else shared
        alpha = _weight(layer, "alpha", tuple(1 if axis + 1 in shared else n for axis, n in enumerate(shape)))
        return g.op("PRelu", [x, g.const(f"{layer.name}/alpha", alpha)], layer.name), shape
    # ReLU layer: max_value caps it (ReLU6); other variants are refused rather than guessed.
    if float(cfg.get("negative_slope") or 0) != 0 or float(cfg.get("threshold") or 0) != 0:
        raise OnnxFaultError(f"Keras ReLU layer '{layer.name}' uses negative_slope/threshold; not supported")
    if cfg.get("max_value") is None:
        return g.op("Relu", [x], layer.name), shape
    bounds = [g.const(f"{layer.name}/min", np.float32(0)), g.const(f"{layer.name}/max", np.float32(cfg["max_value"]))]
    return g.op("Clip", [x, *bounds], layer.name), shape


def _identity(g, layer, inputs, shape):
    x = inputs[0]
    return g.op("Identity", [x], layer.name), shape


def _add(g, layer, inputs, shape):
    out = inputs[0]
    for i, other in enumerate(inputs[1:], 1):
        out = g.op("Add", [out, other], layer.name if i == len(inputs) - 1 else f"{layer.name}/Add_{i}")
    return out, shape


def _concatenate(g, layer, inputs, shapes):
    axis = int(layer.config.get("axis", -1))
    per_sample = axis - 1 if axis > 0 else len(shapes[0]) + axis
    out_shape = list(shapes[0])
    out_shape[per_sample] = sum(s[per_sample] for s in shapes)
    return g.op("Concat", list(inputs), layer.name, axis=axis), tuple(out_shape)


_CONVERTERS = {
    "Dense": _dense, "Activation": _simple_activation, "LeakyReLU": _simple_activation, "ReLU": _simple_activation,
    "PReLU": _simple_activation, "ELU": _simple_activation, "Softmax": _simple_activation, "Dropout": _identity,
    "SpatialDropout2D": _identity, "Flatten": _flatten, "Reshape": _reshape, "Conv2D": _conv2d,
    "MaxPooling2D": _pool, "AveragePooling2D": _pool, "GlobalAveragePooling2D": _global_pool,
    "GlobalMaxPooling2D": _global_pool, "BatchNormalization": _batch_norm, "ZeroPadding2D": _zero_pad, "Add": _add,
    "Concatenate": _concatenate,
}
SUPPORTED = ("InputLayer", *_CONVERTERS)  # InputLayer is read as a graph input, not converted


def to_onnx(architecture: KerasArchitecture, opset: int = 17, producer: str = "onnxfault") -> onnx.ModelProto:
    """The ONNX model computing ``architecture`` (float32, dynamic batch axis named N)."""
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise OnnxFaultError(f"--opset {opset} is not supported for Keras models; use {MIN_OPSET}..{MAX_OPSET}")
    g = _Graph(opset)
    shapes = dict(architecture.input_shapes)
    for layer in architecture.layers:
        converter = _CONVERTERS.get(layer.cls)
        if converter is None:
            raise OnnxFaultError(f"unsupported Keras layer {layer.cls} '{layer.name}'; supported: {', '.join(SUPPORTED)}")
        missing = [name for name in layer.inbound if name not in shapes]
        if missing:
            raise OnnxFaultError(f"Keras layer '{layer.name}' reads '{missing[0]}', which is not defined before it")
        in_shapes = [shapes[name] for name in layer.inbound]
        arg = in_shapes if layer.cls == "Concatenate" else in_shapes[0]
        try:
            output, shapes[layer.name] = converter(g, layer, layer.inbound, arg)
        except KeyError as err:
            raise OnnxFaultError(f"Keras layer '{layer.name}' ({layer.cls}) lacks weight or setting {err}; "
                                 "check the .h5 file") from err
        g.name_output(output, layer.name)  # e.g. a linear Dense ends in its MatMul
    graph = helper.make_graph(
        g.nodes, "keras",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", *architecture.input_shapes[n]]) for n in architecture.inputs],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", *shapes[n]]) for n in architecture.outputs],
        g.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name=producer)
    model.ir_version = min(model.ir_version, 9)
    return model
