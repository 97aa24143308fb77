"""``inspect``: what a model takes, returns, and which of its tensors hold neurons."""
from __future__ import annotations

from pathlib import Path

from .model import Model, as_model
from .provenance import model_io


def inspect_model(model: str | Path | Model, output: str | None = None) -> dict:
    """Input/output names and shapes, opset and candidate layers (tensor, op, shape, neuron counts);
    ``output`` names the class-score output of a model with several."""
    model = as_model(model, output)
    return {
        "model": model.path,
        **model_io(model),
        "batch": "dynamic" if model.fixed_batch is None else model.fixed_batch,
        "notes": model.notes,
        "layers": [{**layer.to_json("channel"), "elements": layer.neurons("element")} for layer in model.layers],
    }
