"""``inspect``: what a model takes, returns, and which of its tensors hold neurons."""
from __future__ import annotations

from .model import as_model
from .model_forms import ModelLike
from .provenance import model_io


def inspect_model(model: ModelLike, output: str | None = None, example_input=None) -> dict:
    """Input/output names and shapes, opset and candidate layers (tensor, op, shape, neuron counts);
    ``output`` names the class-score output of a model with several. ``model`` is any form
    :func:`~onnxfault.as_model` takes (a torch module with ``example_input``)."""
    model = as_model(model, output, example_input)
    return {
        "model": model.path,
        **model_io(model),
        "batch": "dynamic" if model.fixed_batch is None else model.fixed_batch,
        "notes": model.notes,
        "layers": [{**layer.to_json("channel"), "elements": layer.neurons("element")} for layer in model.layers],
    }
