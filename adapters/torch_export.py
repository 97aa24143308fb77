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
from typing import Callable

import numpy as np
import onnx

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
    """Export ``module`` (in eval mode, its mode restored after) on ``example_input`` (a tensor or numpy array
    of one batch) to ``path``, validated; returns a ConvertResult."""
    from .saving import save_validated

    return save_validated(path, _exporter(module, example_input, input_name, output_name, opset), "torch",
                          _module_scope)


def proto_from_torch(module, example_input, *, input_name: str = "input", output_name: str = "logits",
                     opset: int = 17) -> onnx.ModelProto:
    """:func:`from_torch` in memory: the validated ``onnx.ModelProto``; no file is left behind."""
    from .saving import validated_proto

    return validated_proto(_exporter(module, example_input, input_name, output_name, opset),
                           f"the export of torch module {type(module).__name__}", _module_scope)


def _exporter(module, example_input, input_name: str, output_name: str, opset: int) -> Callable[[Path], None]:
    """A writer of ``module``'s ONNX export (dynamic batch axis) to the file it is given."""
    import torch

    example = _example_tensor(module, example_input)

    def export(tmp: Path) -> None:
        with warnings.catch_warnings(), torch.no_grad(), _without_mha_fast_path(), _eval_mode(module):
            warnings.simplefilter("ignore")
            try:
                torch.onnx.export(module, (example,), str(tmp), dynamo=False, input_names=[input_name],
                                  output_names=[output_name], opset_version=opset,
                                  dynamic_axes={input_name: {0: "N"}, output_name: {0: "N"}})
            except (RuntimeError, TypeError, ValueError, IndexError, torch.onnx.errors.OnnxExporterError) as err:
                first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
                raise OnnxFaultError(f"torch cannot export {type(module).__name__} on example_input of shape "
                                     f"{tuple(example.shape)}: {first}") from err

    return export


def _example_tensor(module, example_input):
    """``example_input`` as a tensor: a tensor as is; a numpy array as a tensor of the module's float type."""
    import torch

    if isinstance(example_input, torch.Tensor):
        tensor = example_input
    elif isinstance(example_input, np.ndarray):
        dtype = next((p.dtype for p in module.parameters() if p.is_floating_point()), torch.float32)
        tensor = torch.from_numpy(np.ascontiguousarray(example_input)).to(dtype)
    else:
        raise OnnxFaultError(f"example_input is a {type(example_input).__name__}; give a torch tensor or numpy "
                             "array of one batch (e.g. torch.rand(1, 1, 28, 28))")
    if tensor.ndim < 2 or tensor.shape[0] < 1:
        raise OnnxFaultError(f"example_input has shape {tuple(tensor.shape)}; give one batch of at least one "
                             "sample, batch axis first (e.g. torch.rand(1, 1, 28, 28))")
    return tensor


@contextmanager
def _eval_mode(module):
    """``module`` in eval mode for the duration; each submodule's training flag is restored after."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


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
