"""A float64 numpy forward pass for Keras 2 models, from their JSON config and h5 weights.

Independent of the converter: reads the files itself and follows Keras' documented semantics (TF 'same'
padding puts the extra pad at the end; average pooling ignores padded cells; channels_first Flatten of
Keras ≥ 2.2 flattens in channels-last order). Everything is computed channels-last.
"""
from __future__ import annotations

import json

import h5py
import numpy as np


def read(json_path, h5_path):
    config = json.load(open(json_path))
    weights = {}
    with h5py.File(h5_path, "r") as fh:
        root = fh["model_weights"] if "model_weights" in fh else fh
        for layer in root:
            names = [n.decode() for n in root[layer].attrs.get("weight_names", [])]
            weights[layer] = {n.split("/")[-1].split(":")[0]: np.asarray(root[layer][n], np.float64) for n in names}
    return config, weights


def _pair(v):
    return [v, v] if isinstance(v, int) else list(v)


def _same_pads(size, kernel, stride, dilation):
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def conv2d(x, kernel, strides, dilation, padding):
    kh, kw = kernel.shape[:2]
    if padding == "same":
        ph, pw = _same_pads(x.shape[1], kh, strides[0], dilation[0]), _same_pads(x.shape[2], kw, strides[1], dilation[1])
        x = np.pad(x, [(0, 0), ph, pw, (0, 0)])
    oh = (x.shape[1] - dilation[0] * (kh - 1) - 1) // strides[0] + 1
    ow = (x.shape[2] - dilation[1] * (kw - 1) - 1) // strides[1] + 1
    out = np.zeros((x.shape[0], oh, ow, kernel.shape[3]))
    for i in range(kh):
        for j in range(kw):
            patch = x[:, i * dilation[0]: i * dilation[0] + strides[0] * (oh - 1) + 1: strides[0],
                      j * dilation[1]: j * dilation[1] + strides[1] * (ow - 1) + 1: strides[1], :]
            out += patch @ kernel[i, j]
    return out


def pool(x, size, strides, padding, kind):
    if padding == "same":
        ph, pw = _same_pads(x.shape[1], size[0], strides[0], 1), _same_pads(x.shape[2], size[1], strides[1], 1)
    else:
        ph, pw = (0, 0), (0, 0)
    fill = -np.inf if kind == "max" else 0.0
    padded = np.pad(x, [(0, 0), ph, pw, (0, 0)], constant_values=fill)
    valid = np.pad(np.ones_like(x), [(0, 0), ph, pw, (0, 0)])
    oh = (padded.shape[1] - size[0]) // strides[0] + 1
    ow = (padded.shape[2] - size[1]) // strides[1] + 1
    windows = [(padded[:, i: i + strides[0] * (oh - 1) + 1: strides[0], j: j + strides[1] * (ow - 1) + 1: strides[1]],
                valid[:, i: i + strides[0] * (oh - 1) + 1: strides[0], j: j + strides[1] * (ow - 1) + 1: strides[1]])
               for i in range(size[0]) for j in range(size[1])]
    if kind == "max":
        return np.max([w for w, _ in windows], axis=0)
    return np.sum([w for w, _ in windows], axis=0) / np.sum([v for _, v in windows], axis=0)


def activation(name, x):
    if name in (None, "linear"):
        return x
    if name == "relu":
        return np.maximum(x, 0)
    if name == "tanh":
        return np.tanh(x)
    if name == "sigmoid":
        return 1 / (1 + np.exp(-x))
    if name == "elu":
        return np.where(x > 0, x, np.expm1(np.minimum(x, 0)))
    if name == "softmax":
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    raise NotImplementedError(name)


def _cf(config):
    return config.get("data_format") == "channels_first"


def _nhwc(x, config):
    return x.transpose(0, 2, 3, 1) if _cf(config) else x


def _back(x, config):
    return x.transpose(0, 3, 1, 2) if _cf(config) else x


def layer_forward(cls, config, w, inputs):
    x = inputs[0]
    if cls == "Dense":
        y = x @ w["kernel"] + (w["bias"] if config.get("use_bias", True) else 0)
        return activation(config.get("activation"), y)
    if cls == "Conv2D":
        y = conv2d(_nhwc(x, config), w["kernel"], _pair(config.get("strides", 1)),
                   _pair(config.get("dilation_rate", 1)), config.get("padding", "valid"))
        y = y + (w["bias"] if config.get("use_bias", True) else 0)
        return activation(config.get("activation"), _back(y, config))
    if cls in ("MaxPooling2D", "AveragePooling2D"):
        size = _pair(config.get("pool_size", 2))
        y = pool(_nhwc(x, config), size, _pair(config.get("strides") or size), config.get("padding", "valid"),
                 "max" if cls == "MaxPooling2D" else "avg")
        return _back(y, config)
    if cls in ("GlobalAveragePooling2D", "GlobalMaxPooling2D"):
        y = _nhwc(x, config)
        return y.mean(axis=(1, 2)) if cls.startswith("GlobalAverage") else y.max(axis=(1, 2))
    if cls == "Flatten":
        if _cf(config) and x.ndim > 2:
            x = np.moveaxis(x, 1, -1)
        return x.reshape(len(x), -1)
    if cls == "Reshape":
        return x.reshape(len(x), *config["target_shape"])
    if cls == "BatchNormalization":
        axis = config.get("axis", -1)
        shape = [1] * x.ndim
        shape[axis] = x.shape[axis]
        gamma, beta = w.get("gamma", 1.0), w.get("beta", 0.0)
        r = lambda v: np.reshape(v, shape) if np.ndim(v) else v  # noqa: E731
        return (x - r(w["moving_mean"])) / np.sqrt(r(w["moving_variance"]) + config.get("epsilon", 1e-3)) * r(gamma) + r(beta)
    if cls == "ZeroPadding2D":
        (t, b), (left, right) = config["padding"]
        pads = [(0, 0), (0, 0), (t, b), (left, right)] if _cf(config) else [(0, 0), (t, b), (left, right), (0, 0)]
        return np.pad(x, pads)
    if cls == "Activation":
        return activation(config["activation"], x)
    if cls == "LeakyReLU":
        return np.where(x > 0, x, config["alpha"] * x)
    if cls == "ELU":
        return np.where(x > 0, x, config.get("alpha", 1.0) * np.expm1(np.minimum(x, 0)))
    if cls == "PReLU":
        return np.where(x > 0, x, w["alpha"] * x)
    if cls == "ReLU":
        y = np.maximum(x, 0)
        return y if config.get("max_value") is None else np.minimum(y, config["max_value"])
    if cls == "Softmax":
        return activation("softmax", x)
    if cls == "Dropout":
        return x
    if cls == "Add":
        return np.sum(inputs, axis=0)
    if cls == "Concatenate":
        return np.concatenate(inputs, axis=config.get("axis", -1))
    raise NotImplementedError(cls)


def forward(config, weights, x):
    """float64 outputs of a Keras 2 Sequential (list or dict config) or functional Model."""
    body = config["config"]
    x = np.asarray(x, np.float64)
    if config["class_name"] == "Sequential":
        for entry in body if isinstance(body, list) else body["layers"]:
            if entry["class_name"] != "InputLayer":
                x = layer_forward(entry["class_name"], entry["config"], weights.get(entry["config"]["name"], {}), [x])
        return x
    values = {body["input_layers"][0][0]: x}
    for entry in body["layers"]:
        if entry["class_name"] == "InputLayer":
            continue
        inputs = [values[item[0]] for item in entry["inbound_nodes"][0]]
        values[entry["config"]["name"]] = layer_forward(entry["class_name"], entry["config"],
                                                         weights.get(entry["config"]["name"], {}), inputs)
    return values[body["output_layers"][0][0]]
