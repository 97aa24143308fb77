"""The in-memory forms a model can be given in, each turned into an ONNX model and a description of it.

``bytes`` (a serialized ModelProto), an ``onnx.ModelProto``, a ``torch.nn.Module`` (with ``example_input``)
or a Keras 3 model. Framework objects are recognised without importing their framework (an object of a
framework's class means the framework is already imported) and exported in memory through
``onnxfault.adapters``, validated as ``onnxfault convert`` validates a file. Paths and loaded models are
:func:`onnxfault.model.as_model`'s business.
"""
from __future__ import annotations

import os
import sys
from typing import Any, Union

import onnx
from google.protobuf.message import DecodeError

from .errors import OnnxFaultError

ModelLike = Union[str, os.PathLike, bytes, onnx.ModelProto, Any]
"""A model in any form :func:`~onnxfault.model.as_model` takes (framework objects are typed ``Any``: their
frameworks are optional)."""

IN_MEMORY = "(in memory)"  # ends the description (``Model.path``) of every model not read from a file
ACCEPTED = ("a path to an .onnx file, bytes of a serialized ONNX model, an onnx.ModelProto, a torch.nn.Module "
            "(with example_input=), a Keras 3 model, or a loaded onnxfault.Model")


def in_memory_onnx(model: Any, example_input: Any = None) -> tuple[onnx.ModelProto, str]:
    """``model`` (bytes, a ModelProto, a torch module or a Keras 3 model) as an ONNX model of its own (the
    caller's object is never changed) and a description for reports (``torch module Net (in memory)``)."""
    if isinstance(model, (bytes, bytearray)):
        return _checked_graph(_parsed(bytes(model)), f"{len(model)} bytes"), f"ONNX model bytes {IN_MEMORY}"
    if isinstance(model, onnx.ModelProto):
        copy = onnx.ModelProto()
        copy.CopyFrom(model)
        return _checked_graph(copy, "an onnx.ModelProto"), f"onnx.ModelProto {IN_MEMORY}"
    if _is_instance(model, "torch", "nn.Module"):
        return _from_torch(model, example_input), f"torch module {type(model).__name__} {IN_MEMORY}"
    if _is_instance(model, "keras", "Model"):
        from .adapters.keras3 import proto_from_keras

        return proto_from_keras(model, example_input=example_input), f"Keras model {model.name} {IN_MEMORY}"
    if "tf_keras" in _root_modules(model) or (_is_instance(model, "keras", "Model", keras3=False)):
        raise not_accepted(f"is a Keras 2 model ({type(model).__name__}); save it as .h5 and convert it with "
                           "`onnxfault convert`, or load it in Keras 3")
    raise not_accepted(f"has type {_type_name(model)}, none of the accepted forms")


def not_accepted(cause: str) -> OnnxFaultError:
    """The one error for a ``model`` argument that cannot be used: the cause, then the accepted forms."""
    return OnnxFaultError(f"model {cause}; model must be {ACCEPTED}")


def _from_torch(module: Any, example_input: Any) -> onnx.ModelProto:
    if example_input is None:
        raise not_accepted(f"is a torch.nn.Module ({type(module).__name__}) given without example_input (pass "
                           "example_input= a torch tensor or numpy array of one batch, e.g. torch.rand(1, 1, 28, 28))")
    from .adapters.torch_export import proto_from_torch

    return proto_from_torch(module, example_input)


def _parsed(data: bytes) -> onnx.ModelProto:
    try:
        return onnx.load_model_from_string(data)
    except (DecodeError, ValueError, RuntimeError, RecursionError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise not_accepted(f"is {len(data)} bytes that are not a serialized ONNX model ({first})") from None


def _checked_graph(proto: onnx.ModelProto, what: str) -> onnx.ModelProto:
    """Protobuf parses many byte strings as an empty or partial model: one with no graph or opset is refused."""
    if not proto.graph.node or not proto.opset_import:
        raise not_accepted(f"is {what} with no ONNX graph or opset (not a serialized ONNX model)")
    return proto


def _root_modules(obj: Any) -> set[str]:
    """The top-level packages of the classes ``obj``'s type derives from (``{"torch", "builtins"}``)."""
    return {cls.__module__.split(".")[0] for cls in type(obj).__mro__}


def _is_instance(obj: Any, package: str, attribute: str, keras3: bool = True) -> bool:
    """Whether ``obj`` is a ``package.attribute`` (e.g. ``torch`` ``nn.Module``), asked only when ``package`` is
    already imported and among ``obj``'s classes' packages, so nothing is imported here. For Keras, ``keras3``
    asks for (or, False, against) Keras 3."""
    framework = sys.modules.get(package)
    if framework is None or package not in _root_modules(obj):
        return False
    if package == "keras" and str(getattr(framework, "__version__", "3")).startswith("3") != keras3:
        return False
    cls: Any = framework
    for part in attribute.split("."):
        cls = getattr(cls, part, None)
    return isinstance(cls, type) and isinstance(obj, cls)


def _type_name(obj: Any) -> str:
    cls = type(obj)
    return cls.__name__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
