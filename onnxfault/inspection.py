"""``inspect``: what a model takes, returns, and which of its tensors hold neurons."""
from __future__ import annotations

from pathlib import Path

from .model import Model, load_model
from .provenance import model_io


def inspect_model(model: str | Path | Model) -> dict:
    """Input/output names and shapes, opset and candidate layers (tensor, op, shape, neuron counts)."""
    model = model if isinstance(model, Model) else load_model(model)
    return {
        "model": model.path,
        **model_io(model),
        "batch": "dynamic" if model.fixed_batch is None else model.fixed_batch,
        "notes": model.notes,
        "layers": [{**layer.to_json("channel"), "elements": layer.neurons("element")} for layer in model.layers],
    }
