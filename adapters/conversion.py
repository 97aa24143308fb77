"""``onnxfault convert``: a framework model file → a validated ONNX file.

The source kind comes from the file: ``.json`` (+ ``.h5``) or a full-model ``.h5`` → legacy Keras 2
reader (no TensorFlow); ``.keras`` → Keras 3's own ONNX export (``onnxfault[keras]``); ``.pt``/``.pth``
TorchScript archive → torch's exporter (needs ``--input-shape``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from onnxfault.errors import OnnxFaultError
from onnxfault.files import check_writable, write_atomic

KINDS = {".json": "keras-legacy", ".h5": "keras-legacy", ".hdf5": "keras-legacy", ".keras": "keras",
         ".pt": "torchscript", ".pth": "torchscript"}


@dataclass
class ConvertResult:
    """What was written: the file, its input/output names and shapes, and its size in nodes."""

    path: str
    source_kind: str
    inputs: list[tuple[str, list]]
    outputs: list[tuple[str, list]]
    nodes: int


def _shape(value) -> list:
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


def save_validated(path: str | Path, write: Callable[[Path], None], kind: str,
                   scope_of: Callable[[str], str | None] | None = None) -> ConvertResult:
    """``write(tmp)`` an ONNX file, name its tensors after their source layers when ``scope_of`` (node name
    → layer) is given, check it (checker, shape inference, a run on random input), then rename it to
    ``path``; a model that fails the checks is never left at ``path``."""
    from onnxfault.model import load_model

    facts = {}

    def write_and_check(tmp: Path) -> None:
        write(tmp)
        if scope_of is not None:
            import onnx

            from onnxfault.graph import name_scope_outputs

            onnx.save(name_scope_outputs(onnx.load(str(tmp)), scope_of), str(tmp))
        model = load_model(tmp)
        if any(d is None for d in model.input_shape):
            raise OnnxFaultError("the written model has dynamic input sizes; pass --input-shape")
        x = np.random.default_rng(0).random((2, *model.input_shape), dtype=np.float32)
        scores = model.session("cpu").run(x)[0]
        if scores.shape != (2, model.num_classes) or not np.isfinite(scores).all():
            raise OnnxFaultError(f"the converted model gives {scores.shape} non-finite or misshapen scores "
                                 "on random input; the conversion is wrong")
        graph = model.proto.graph
        initializers = {i.name for i in graph.initializer}
        facts.update(inputs=[(v.name, _shape(v)) for v in graph.input if v.name not in initializers],
                     outputs=[(v.name, _shape(v)) for v in graph.output], nodes=len(graph.node))

    write_atomic(path, write_and_check)
    return ConvertResult(str(path), kind, facts["inputs"], facts["outputs"], facts["nodes"])


def source_kind(source: Path) -> str:
    kind = KINDS.get(source.suffix.lower())
    if kind is None:
        known = ", ".join(sorted(KINDS))
        raise OnnxFaultError(f"cannot tell what kind of model {source.name} is; give one of {known}")
    return kind


def convert(source: str | Path, output: str | Path, *, weights: str | Path | None = None,
            input_shape: Sequence[int] | None = None, opset: int = 17) -> ConvertResult:
    """Convert ``source`` to the ONNX file ``output`` (see the module docstring for the kinds)."""
    source = Path(source)
    kind = source_kind(source)
    check_writable(output, "output")
    if not source.exists():
        raise OnnxFaultError(f"model file {source} does not exist; check the path")
    if kind == "keras-legacy":
        import onnx

        from .keras_legacy import load_legacy_keras, to_onnx

        proto = to_onnx(load_legacy_keras(source, weights), opset)
        return save_validated(output, lambda tmp: onnx.save(proto, str(tmp)), kind)
    if kind == "keras":
        from .keras3 import from_keras, load_keras

        return from_keras(load_keras(source), output, opset=opset)
    from .torch_export import from_torch, load_torchscript

    if not input_shape:
        raise OnnxFaultError("a TorchScript model needs --input-shape (per sample, e.g. 1,28,28)")
    import torch

    return from_torch(load_torchscript(source), torch.rand(1, *input_shape), output, opset=opset)
