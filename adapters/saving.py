"""Writing a converted model: validated (ONNX checker, shape inference, a run on random input) before it
takes its name, or before it is returned in memory. Shared by the exporters (``torch_export``, ``keras3``,
the legacy Keras reader)."""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import onnx

from onnxfault.errors import OnnxFaultError
from onnxfault.files import write_atomic


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
    facts: dict = {}
    write_atomic(path, _written_and_checked(write, scope_of, f"the converted model ({Path(path).name})", facts))
    return ConvertResult(str(path), kind, facts["inputs"], facts["outputs"], facts["nodes"])


def validated_proto(write: Callable[[Path], None], what: str,
                    scope_of: Callable[[str], str | None] | None = None) -> onnx.ModelProto:
    """:func:`save_validated` in memory: the model ``write(tmp)`` writes, named and checked the same way, is
    returned; ``tmp`` (with any external data beside it) lies in a temporary folder that is always removed.
    ``what`` names the model in errors (``the export of torch module Net``)."""
    with tempfile.TemporaryDirectory(prefix="onnxfault-export-", ignore_cleanup_errors=True) as folder:
        tmp = Path(folder) / "model.onnx"
        _written_and_checked(write, scope_of, what, {})(tmp)
        return onnx.load(str(tmp))


def _written_and_checked(write: Callable[[Path], None], scope_of: Callable[[str], str | None] | None, what: str,
                         facts: dict) -> Callable[[Path], None]:
    """``write`` followed by the checks (see :func:`save_validated`), filling ``facts`` with the model's inputs,
    outputs and node count; errors name the model ``what``, not its temporary file."""
    def write_and_check(tmp: Path) -> None:
        try:
            write(tmp)
            facts.update(_checked(tmp, scope_of))
        except OnnxFaultError as err:
            raise OnnxFaultError(str(err).replace(str(tmp), what)) from err

    return write_and_check


def _checked(tmp: Path, scope_of: Callable[[str], str | None] | None) -> dict:
    from onnxfault.model import load_model

    if scope_of is not None:
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
    return {"inputs": [(v.name, _shape(v)) for v in graph.input if v.name not in initializers],
            "outputs": [(v.name, _shape(v)) for v in graph.output], "nodes": len(graph.node)}
