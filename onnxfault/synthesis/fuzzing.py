"""What the coverage-guided generators (DLFuzz, DeepXplore, DeepHunter) share: the image axes of a batch, the
RMS-normalised gradient they step along, the model with every layer exposed, and DeepXplore's neuron coverage
(each layer's output scaled to [0, 1] by its own min and max on the input, a neuron covered when its channel's
mean is above a threshold)."""
from __future__ import annotations

import numpy as np


def spatial_axes(shape: tuple[int, ...]) -> tuple[int, int] | None:
    """The (height, width) axes of a batch of images of ``shape``: (N, C, H, W) with 1 or 3 channels first, else
    (N, H, W, C) or (N, H, W); None for other inputs."""
    if len(shape) == 4:
        return (2, 3) if shape[1] in (1, 3) and shape[3] not in (1, 3) else (1, 2)
    return (1, 2) if len(shape) == 3 else None


def normalized(grad: np.ndarray) -> np.ndarray:
    """DLFuzz's (and DeepXplore's) ``normalize``: g / (√mean(g²) + 1e-5), over one input's elements."""
    return grad / (np.sqrt(np.mean(np.square(grad, dtype=np.float64))) + 1e-5)


def scaled_values(outputs: list[np.ndarray], axes: list[tuple[int, ...]]) -> np.ndarray:
    """One input's neuron values, each layer's scaled by the min and max of that layer's whole output
    (DLFuzz's ``scale`` then the channel mean); a constant layer scales to 0."""
    parts = []
    for out, mean_axes in zip(outputs, axes):
        low, high = float(out.min()), float(out.max())
        values = out.mean(axis=mean_axes, dtype=np.float64) if mean_axes else out.astype(np.float64)
        values = values.reshape(len(out), -1)[0]
        parts.append((values - low) / (high - low) if high > low else np.zeros_like(values))
    return np.concatenate(parts)


def exposed_module(p, layers):
    """The model with every layer's output exposed after the class scores, its neuron groups, and the axes
    a channel's mean is taken over."""
    from .. import graph
    from ..adapters.gradients import NeuronGroup
    from ..spectrum import probe_axes

    tensors = [layer.tensor for layer in layers]
    module = p.differentiable(graph.expose_outputs(p.model.scores_only(), tensors))
    groups = [NeuronGroup(1 + i, probe_axes(layer, "channel"), tuple(range(layer.neurons("channel"))))
              for i, layer in enumerate(layers)]
    return module, groups, [probe_axes(layer, "channel") for layer in layers]


def cover(times: np.ndarray, outputs: list[np.ndarray], axes, threshold: float) -> None:
    """Count, in ``times``, the neurons one input's ``outputs`` (class scores first) covers."""
    times += scaled_values(outputs[1:], axes) > threshold


def neuron_groups(groups, chosen: np.ndarray) -> list:
    """The neuron groups holding just the ``chosen`` flat neurons, one per layer that has some."""
    from ..adapters.gradients import NeuronGroup

    picked, start = [], 0
    for group in groups:
        size = len(group.indices)
        mine = np.sort(chosen[(chosen >= start) & (chosen < start + size)]) - start
        if len(mine):
            picked.append(NeuronGroup(group.output, group.axes, tuple(int(j) for j in mine)))
        start += size
    return picked
