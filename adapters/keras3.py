"""Keras 3 models (``.keras`` files or in-memory) → ONNX through Keras' own exporter (TensorFlow
backend; ``pip install "onnxfault[keras]"``). ``tf2onnx.convert.from_keras`` does not work on Keras 3.

The exporter runs tf2onnx, which writes opsets 14 to 18 (``SUPPORTED_OPSETS``; 17 by default here). It
leaves TensorFlow's ``Erfc`` (exact GELU is ``0.5·x·erfc(−x/√2)``) as an op ONNX does not have; it is
rewritten as ``1 − Erf``. tf2onnx names nodes ``<model>/<layer>_<n>/<op>``; each layer's single output
tensor is renamed to the Keras layer name (``conv1``, ``dense_3``), so it can be named in ``--layers``.

The export takes Keras' own steps (``keras.Model.export(format="onnx")``: the model's tf.function, then
``tf2onnx.convert.from_function``) with two repairs that ``keras.applications`` models need:

* constants the function captures (a ``Normalization`` layer's mean and variance, in EfficientNet and ConvNeXt)
  come out of tf2onnx as graph inputs; they become initializers holding the captured values;
* Keras runs grouped convolutions (ConvNeXt's depthwise ones) as XLA-compiled tf.functions, since TensorFlow's
  CPU kernels lack them; tf2onnx cannot see into those and leaves TensorFlow calls ONNX cannot run. Tracing
  needs no kernel, so while exporting they are traced as the plain ``tf.nn.convolution`` (an ONNX ``Conv`` with
  ``group``).
"""
from __future__ import annotations

import os
import re
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

import numpy as np
import onnx

from onnxfault.errors import OnnxFaultError
from onnxfault.quiet import silenced_fds

INSTALL_HINT = "install TensorFlow with `pip install \"onnxfault[keras]\"`"
SUPPORTED_OPSETS = range(14, 19)  # tf2onnx 1.16+: "we support and test ONNX opset-14 to opset-18"


@contextmanager
def _quiet():
    """Silence TensorFlow's C++ start-up lines (printed before its logging can be configured) and
    tf2onnx's numpy warnings; Python exceptions still propagate."""
    with silenced_fds(2), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _keras():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    try:
        with _quiet():
            import keras
            import tensorflow  # noqa: F401 - the exporter needs the TensorFlow backend
    except ImportError as err:
        raise OnnxFaultError(f"reading Keras 3 models needs TensorFlow ({err.name} is missing); {INSTALL_HINT}") from None
    return keras


def load_keras(path: str | Path):
    """A ``.keras`` model file, loaded in Keras' safe mode (no arbitrary code from the file)."""
    keras = _keras()
    try:
        return keras.saving.load_model(str(path), compile=False, safe_mode=True)
    except Exception as err:  # Keras raises many types for a bad file
        raise OnnxFaultError(f"Keras cannot load {path}: {str(err).splitlines()[0]}") from err


def _layer_scope(layer_names: set[str]):
    def scope_of(node_name: str) -> str | None:
        for part in reversed(node_name.split("/")[:-1]):
            for candidate in (part, re.sub(r"_\d+$", "", part)):
                if candidate in layer_names:
                    return candidate
        return None

    return scope_of


def check_opset(opset: int) -> None:
    if opset not in SUPPORTED_OPSETS:
        raise OnnxFaultError(f"Keras models convert at opsets {SUPPORTED_OPSETS.start}-{SUPPORTED_OPSETS.stop - 1} "
                             f"(what tf2onnx writes), not {opset}; choose one with --opset")


def rewrite_erfc(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy where every ``Erfc(x)`` node computes ``1 − Erf(x)`` (ONNX has Erf, not Erfc)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    if not any(n.op_type == "Erfc" for n in out.graph.node):
        return out
    types = _elem_types(out)
    nodes = []
    for node in out.graph.node:
        if node.op_type != "Erfc" or node.domain not in ("", "ai.onnx"):
            nodes.append(node)
            continue
        x, y, stem = node.input[0], node.output[0], f"{node.name or node.output[0]}/onnxfault"
        dtype = onnx.helper.tensor_dtype_to_np_dtype(types.get(x, onnx.TensorProto.FLOAT))
        out.graph.initializer.append(onnx.numpy_helper.from_array(np.ones((), dtype), f"{stem}/one"))
        nodes += [onnx.helper.make_node("Erf", [x], [f"{stem}/erf"], name=f"{stem}/Erf"),
                  onnx.helper.make_node("Sub", [f"{stem}/one", f"{stem}/erf"], [y], name=node.name or f"{stem}/Sub")]
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    return out


def _elem_types(model: onnx.ModelProto) -> dict[str, int]:
    """Element type of every tensor whose type is known or inferable (Erfc itself stops inference after it,
    so the model is first inferred with Erfc read as Erf)."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    for node in probe.graph.node:
        if node.op_type == "Erfc":
            node.op_type = "Erf"
    try:
        probe = onnx.shape_inference.infer_shapes(probe)
    except Exception:  # inference is best effort: unknown types default to float
        pass
    graph = probe.graph
    values = list(graph.input) + list(graph.value_info) + list(graph.output)
    return {v.name: v.type.tensor_type.elem_type for v in values} | {i.name: i.data_type for i in graph.initializer}


def from_keras(model, path: str | Path, *, opset: int = 17):
    """Export an in-memory Keras 3 model to ``path``, validated; returns a ConvertResult."""
    from .saving import save_validated

    return save_validated(path, _exporter(model, opset), "keras", _layer_scope({l.name for l in model.layers}))


def proto_from_keras(model, *, opset: int = 17, example_input=None) -> onnx.ModelProto:
    """:func:`from_keras` in memory: the validated ``onnx.ModelProto``; no file is left behind. A model that has
    never run is first called on ``example_input`` (one batch) when given, else on zeros of its input shape."""
    from .saving import validated_proto

    return validated_proto(_exporter(model, opset, example_input), f"the export of Keras model {model.name}",
                           _layer_scope({l.name for l in model.layers}))


def _exporter(model, opset: int, example_input=None) -> Callable[[Path], None]:
    """A writer of ``model``'s ONNX export (through Keras' own exporter, ``Erfc`` rewritten) to the file it is
    given; the model is first called once when it never ran (the exporter needs that)."""
    check_opset(opset)
    _keras()
    if not getattr(model, "_called", True):
        example = _example(model) if example_input is None else example_input
        try:
            model(example)
        except Exception as err:  # Keras and TensorFlow raise their own types for a misfit input
            raise OnnxFaultError(f"example_input of shape {getattr(example, 'shape', '?')} does not fit Keras "
                                 f"model {model.name} ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); "
                                 "pass one batch in the model's input layout") from None

    def export(tmp: Path) -> None:
        with _quiet(), _grouped_convs_traced_plainly():
            captured = _export_function(model, tmp, opset)
        onnx.save(constants_as_initializers(rewrite_erfc(onnx.load(str(tmp))), captured), str(tmp))

    return export


def _export_function(model, path: Path, opset: int) -> dict[str, np.ndarray]:
    """Keras' own ONNX export (``keras/src/export/onnx.py`` for the TensorFlow backend: the model's tf.function,
    then tf2onnx) into ``path``; returns the constants that function captures, by the names tf2onnx gives them."""
    import tensorflow as tf
    import tf2onnx
    from keras.src import tree
    from keras.src.export.export_utils import get_input_signature, make_tf_tensor_spec
    from keras.src.export.onnx import get_concrete_fn
    from keras.src.export.tf2onnx_lib import patch_tf2onnx

    signature = tree.map_structure(make_tf_tensor_spec, get_input_signature(model))
    function = get_concrete_fn(model, signature)
    traced = function.get_concrete_function(*signature) if hasattr(function, "get_concrete_function") else function
    captured = {inside.name: outside.numpy() for outside, inside in traced.graph.captures
                if outside.dtype != tf.resource and hasattr(outside, "numpy")}
    patch_tf2onnx()  # what Keras does before calling tf2onnx (numpy 2)
    tf2onnx.convert.from_function(function, signature, opset=opset, output_path=str(path))
    return captured


@contextmanager
def _grouped_convs_traced_plainly():
    """While exporting, Keras' TensorFlow convolution is traced as ``tf.nn.convolution`` itself, never through
    the XLA-compiled function Keras runs grouped convolutions with (see the module's docstring)."""
    import tensorflow as tf
    from keras.src.backend.tensorflow import nn

    def conv(inputs, kernel, strides=1, padding="valid", data_format=None, dilation_rate=1):
        layout = nn._convert_data_format(nn.backend.standardize_data_format(data_format), len(inputs.shape))
        return tf.nn.convolution(inputs, kernel, strides, padding.upper(), data_format=layout, dilations=dilation_rate)

    original, nn.conv = nn.conv, conv
    try:
        yield
    finally:
        nn.conv = original


def constants_as_initializers(model: onnx.ModelProto, values: dict[str, np.ndarray]) -> onnx.ModelProto:
    """A copy where every graph input named in ``values`` is an initializer holding that value (in the input's
    element type)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    for value in [i for i in graph.input if i.name in values]:
        dtype = onnx.helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type)
        graph.initializer.append(onnx.numpy_helper.from_array(np.asarray(values[value.name], dtype), value.name))
        graph.input.remove(value)
    return out


def _example(model) -> np.ndarray:
    """Zeros of one sample of ``model``'s declared input shape (to run a model that never ran)."""
    try:
        shape = model.inputs[0].shape
    except (AttributeError, ValueError, IndexError):  # a subclassed model declares no input until called
        raise OnnxFaultError(f"Keras model {model.name} has never run and declares no input shape; pass "
                             "example_input= a numpy array of one batch") from None
    return np.zeros((1, *shape[1:]), np.float32)
