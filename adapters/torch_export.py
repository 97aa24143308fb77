"""PyTorch module → ONNX file with a dynamic batch axis.

Uses torch's TorchScript-based exporter (``dynamo=False``): it works with torch 2.13 here without extra
packages, whereas the torch.export-based exporter needs ``onnxscript``.
"""
from __future__ import annotations

import warnings
from pathlib import Path

from onnxfault.files import write_atomic


def from_torch(module, example_input, path: str | Path, *, input_name: str = "input",
               output_name: str = "logits", opset: int = 17) -> Path:
    """Export ``module`` (in eval mode) to ``path``; the batch axis of input and output is dynamic."""
    import torch

    module = module.eval()

    def export(tmp: Path) -> None:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, (example_input,), str(tmp), dynamo=False, input_names=[input_name],
                              output_names=[output_name], opset_version=opset,
                              dynamic_axes={input_name: {0: "N"}, output_name: {0: "N"}})

    return write_atomic(path, export)
