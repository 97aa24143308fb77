"""PyTorch → ONNX with a dynamic batch axis and tensors named after the modules that produce them.

Uses torch's TorchScript-based exporter (``dynamo=False``): it works with torch 2.13 here without extra
packages, whereas the torch.export-based exporter needs ``onnxscript``. That exporter names nodes
``/<scope>/<module>/<Op>``; the single output of each module's nodes is renamed to the module's
qualified name (``fc1``, ``features.0``, ``6.block.2``), so it can be named in ``--layers``. Multi-head
attention is exported through its plain path (matmuls and softmax): the fused inference kernel it would
otherwise take in eval mode has no ONNX export.
"""
from __future__ import annotations

import warnings
from contextlib import contextmanager
from pathlib import Path

from onnxfault.errors import OnnxFaultError


def _module_scope(node_name: str) -> str | None:
    """``/6/block/block.2/Relu`` → ``6.block.2``: the node's module, as a qualified name."""
    parts = node_name.strip("/").split("/")[:-1]
    if not parts:
        return None
    name, last = parts[0], parts[0]
    for part in parts[1:]:  # a segment may repeat its parent's name as a prefix ("block", "block.2")
        name = name[: len(name) - len(last)] + part if part.startswith(last + ".") else f"{name}.{part}"
        last = part
    return name


def from_torch(module, example_input, path: str | Path, *, input_name: str = "input",
               output_name: str = "logits", opset: int = 17):
    """Export ``module`` (in eval mode) to ``path``, validated; returns a ConvertResult."""
    import torch

    from .saving import save_validated

    module = module.eval()

    def export(tmp: Path) -> None:
        with warnings.catch_warnings(), torch.no_grad(), _without_mha_fast_path():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, (example_input,), str(tmp), dynamo=False, input_names=[input_name],
                              output_names=[output_name], opset_version=opset,
                              dynamic_axes={input_name: {0: "N"}, output_name: {0: "N"}})

    return save_validated(path, export, "torch", _module_scope)


@contextmanager
def _without_mha_fast_path():
    """nn.MultiheadAttention's fused inference path (``aten::_native_multi_head_attention``, which the
    exporter cannot write) switched off for the duration."""
    import torch

    before = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(before)


def load_torchscript(path: str | Path):
    """A TorchScript archive (``torch.jit.save``); TorchScript code, not arbitrary pickled objects."""
    import torch

    try:
        return torch.jit.load(str(path), map_location="cpu")
    except (RuntimeError, ValueError) as err:
        raise OnnxFaultError(f"{path} is not a TorchScript archive ({str(err).splitlines()[0]}); save the "
                             "model with torch.jit.save, or export it from Python with onnxfault.adapters.from_torch") from err
