"""``onnxfault convert``: a framework model file → a validated ONNX file.

The source kind comes from the file: ``.json`` (+ ``.h5``) or a full-model ``.h5`` → legacy Keras 2
reader (no TensorFlow); ``.keras`` → Keras 3's own ONNX export (``onnxfault[keras]``); ``.pt``/``.pth``
TorchScript archive → torch's exporter (needs ``--input-shape``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from onnxfault.errors import OnnxFaultError
from onnxfault.files import check_not_read, check_writable

from .saving import ConvertResult, save_validated

KINDS = {".json": "keras-legacy", ".h5": "keras-legacy", ".hdf5": "keras-legacy", ".keras": "keras",
         ".pt": "torchscript", ".pth": "torchscript"}


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
    check_not_read(output, "output", [source, weights, source.with_suffix(".h5")])  # a JSON's weights are beside it
    if not source.exists():
        raise OnnxFaultError(f"model file {source} does not exist; check the path")
    if kind == "keras-legacy":
        import onnx

        from .keras_legacy import load_legacy_keras, to_onnx

        proto = to_onnx(load_legacy_keras(source, weights), opset)
        return save_validated(output, lambda tmp: onnx.save(proto, str(tmp)), kind)
    if kind == "keras":
        from .keras3 import check_opset, from_keras, load_keras

        check_opset(opset)
        return from_keras(load_keras(source), output, opset=opset)
    from .torch_export import from_torch, load_torchscript

    if not input_shape:
        raise OnnxFaultError("a TorchScript model needs --input-shape (per sample, e.g. 1,28,28)")
    import torch

    return from_torch(load_torchscript(source), torch.rand(1, *input_shape), output, opset=opset)
