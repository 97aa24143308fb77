"""What every synthesis method gets and shares: the problem and L∞ projection (the contract is ``contract``, the
registry ``methods``)."""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import onnx

from ..localization import SuspiciousNeuron
from ..model import Layer, Model
from ..spectrum import probe_axes


@dataclass
class Problem:
    """Seeds to perturb and everything a method may use: ``options`` is the method's ``Options`` (checked);
    a run leaves the statistics its report needs in ``stats`` (one chunk's, merged by the method's ``merge``)."""

    model: Model
    x: np.ndarray  # seeds, as model inputs (float32)
    y: np.ndarray  # their labels
    neurons: list[SuspiciousNeuron]
    layers: dict[str, Layer]
    granularity: str | None
    target: int | None
    clip: tuple[float, float]
    options: object  # the method's Options
    device: str = "auto"
    seed: int = 0
    module: object = None  # the differentiable module a run used (its device and CUDA peak are reported)
    cache: dict = field(default_factory=dict)  # built once (sessions, modules), shared by the chunks of one problem
    stats: object = None  # the chunk's statistics for the report
    side: dict = field(default_factory=dict)  # the model's other inputs, one row per seed (a text model's mask)
    space: object = None  # a text model's EmbeddingSpace (synthesis.embedding); None for one float input
    records: np.ndarray | None = None  # a text model's seeds as read (token ids, mask), one record per seed
    first: int = 0  # the position of ``x[0]`` among all the seeds (a chunk's offset)
    prepared: object = None  # what the method's ``prepare`` computed from the data, shared by every chunk

    def rows(self, start: int, stop: int, cache: dict | None = None) -> "Problem":
        """The seeds ``start`` … ``stop`` - 1 as a problem of their own (a chunk): seeds, labels and side inputs
        sliced, nothing reported back yet; ``cache``: what the chunk starts with (default: this problem's)."""
        return replace(self, x=self.x[start:stop], y=self.y[start:stop], module=None, stats=None,
                       first=self.first + start,
                       side={k: v[start:stop] for k, v in self.side.items()},
                       records=None if self.records is None else self.records[start:stop],
                       cache=self.cache if cache is None else cache)

    @property
    def distance(self) -> float | None:
        """The L∞ bound of the method's options (None: no bound, or the method has none)."""
        return getattr(self.options, "distance", None)

    def once(self, key: str, build):
        """``build()`` the first time ``key`` is asked for, for every chunk of this problem."""
        if key not in self.cache:
            self.cache[key] = build()
        return self.cache[key]

    def differentiable(self, proto: onnx.ModelProto):
        """``proto`` as a differentiable module (the ONNX→torch adapter)."""
        from ..adapters.gradients import Differentiable

        return Differentiable(proto, self.device)

    def ascent_tensors(self) -> dict[str, str]:
        """Neuron tensor → tensor whose value is ascended: its pre-activation for an increasing activation.

        Ascending the pre-activation moves the activation the same way, and still has a gradient where a
        ReLU is inactive (suspicious neurons often are, on correctly classified seeds); it is the value of
        DeepFault's "trainable layer" output. Spectra are unchanged: the sign is the same. Read off the graph
        once per problem (a method's build asks twice: for its outputs and for its neuron groups)."""
        from ..layers import pre_activations

        return self.once("ascent_tensors", lambda: pre_activations(
            self.model.proto, list(dict.fromkeys(n.tensor for n in self.neurons))))

    def neuron_groups(self, outputs: list[str]) -> list:
        """The suspicious neurons as gradient groups over the module outputs named ``outputs`` (which
        hold the ascent tensors)."""
        from ..adapters.gradients import NeuronGroup

        ascent = self.ascent_tensors()
        by_tensor: dict[str, list[int]] = {}
        for n in self.neurons:
            by_tensor.setdefault(n.tensor, []).append(n.index)
        return [NeuronGroup(outputs.index(ascent[t]), probe_axes(self.layers[t], self.granularity), tuple(idx))
                for t, idx in by_tensor.items()]

    def delta_bounds(self, flat: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        """Per-element bounds on a change δ of the seeds ``flat``: the L∞ box (the whole range when
        ``distance`` is None) intersected with the valid range; and the box's half-width."""
        width = self.distance if self.distance is not None else float(self.clip[1] - self.clip[0])
        return np.maximum(self.clip[0] - flat, -width), np.minimum(self.clip[1] - flat, width), width

    def project(self, x: np.ndarray) -> np.ndarray:
        """Back into the L∞ ball of radius ``distance`` around the seeds, then into the valid range."""
        if self.distance is not None:
            x = np.clip(x, self.x - self.distance, self.x + self.distance)
        return np.clip(x, *self.clip).astype(np.float32)

    @property
    def scores_are_probabilities(self) -> bool:
        return self.model.scores_are_probabilities
