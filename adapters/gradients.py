"""Gradients with respect to the input of an ONNX (sub-)model, through the ONNX→torch adapter.

The synthesis methods in ``onnxfault.synthesis`` are numpy code; the objectives they ascend are
computed here, the only place that touches torch for them:

* ``neuron_ascent``: the mean value of chosen neurons (HS-FGSM; DeepFault's ``--gradient raw``);
* ``normalized_neuron_ascent``: the mean of the chosen neurons' RMS-normalised gradients (DeepFault);
* ``loss_gradient``: the cross-entropy of the class scores (FGSM/PGD, untargeted or targeted);
* ``linear_objective``: a weighted sum of class scores and neuron values (DLFuzz).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
import torch

from onnxfault.errors import OnnxFaultError

from .onnx2torch import to_torch


@dataclass(frozen=True)
class NeuronGroup:
    """Neurons read from one output of the module: ``mean over axes`` (batch-inclusive; empty for
    elements), flattened per sample, at the flat ``indices``."""

    output: int
    axes: tuple[int, ...]
    indices: tuple[int, ...]


def torch_device(device: str) -> torch.device:
    if device == "cuda" and not torch.cuda.is_available():
        raise OnnxFaultError("--device cuda: torch sees no CUDA GPU; use --device cpu")
    return torch.device("cuda" if device in ("cuda", "auto") and torch.cuda.is_available() else "cpu")


class Differentiable:
    """An ONNX model as a frozen torch module on ``device``; all methods take and return numpy."""

    def __init__(self, model: onnx.ModelProto, device: str = "auto"):
        self.device = torch_device(device)
        self.module = to_torch(model).to(self.device)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)

    @property
    def device_name(self) -> str:
        return self.device.type

    def cuda_peak_mb(self) -> float | None:
        if self.device.type != "cuda":
            return None
        return torch.cuda.max_memory_allocated(self.device) / 2**20

    def _input(self, x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(x, np.float32)).to(self.device).requires_grad_(True)

    def _forward(self, xt: torch.Tensor, side: dict[str, np.ndarray] | None) -> list[torch.Tensor]:
        """The module's outputs for ``xt`` and the module's other inputs from ``side`` (rows of the same samples)."""
        names = self.module.side_names
        if not names:
            return self.module(xt)
        missing = [n for n in names if not side or n not in side]
        if missing:
            raise OnnxFaultError(f"the differentiated model also reads input '{missing[0]}', which was not given")
        return self.module(xt, *[torch.from_numpy(np.ascontiguousarray(side[n])).to(self.device) for n in names])

    @staticmethod
    def _values(outputs, groups: list[NeuronGroup]) -> torch.Tensor:
        parts = []
        for group in groups:
            value = outputs[group.output]
            indices = list(group.indices)
            if group.axes:  # pick the chosen channels first: averaging every channel costs far more
                channel = next(a for a in range(1, value.dim()) if a not in group.axes)
                value = value.index_select(channel, torch.as_tensor(indices, device=value.device))
                value, indices = value.mean(dim=group.axes, dtype=torch.float64), slice(None)
            parts.append(value.reshape(len(value), -1)[:, indices].to(torch.float64))
        return torch.cat(parts, dim=1)

    def neuron_ascent(self, x: np.ndarray, groups: list[NeuronGroup], side: dict[str, np.ndarray] | None = None
                      ) -> tuple[np.ndarray, np.ndarray]:
        """Gradient of each sample's mean neuron value (averaged over the chosen neurons), and the values.
        ``side``: the module's other inputs for the same samples, by name (here and below)."""
        xt = self._input(x)
        values = self._values(self._forward(xt, side), groups)
        values.mean(dim=1).sum().backward()
        return xt.grad.detach().cpu().numpy(), values.detach().cpu().numpy()

    def normalized_neuron_ascent(self, x: np.ndarray, groups: list[NeuronGroup],
                                 side: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """Mean over the chosen neurons of each neuron's input gradient divided by its root-mean-square.

        As DeepFault's code at the time of the paper (``utils.normalize``: g / (sqrt(mean(g²)) + 1e-5)),
        the RMS of a neuron's gradient is taken per sample over all of that sample's input elements (the
        code differentiated one input at a time), so every neuron pulls with the same strength whatever the
        scale of its gradient. One forward pass, then one backward pass per neuron on the retained graph:
        measured faster than one batched vector-Jacobian product (``is_grads_batched``) on MLPs and LeNet."""
        xt = self._input(x)
        values = self._values(self._forward(xt, side), groups)
        axes = tuple(range(1, xt.dim()))
        total = torch.zeros_like(xt, dtype=torch.float64)
        for j in range(values.shape[1]):
            (grad,) = torch.autograd.grad(values[:, j].sum(), xt, retain_graph=j + 1 < values.shape[1])
            grad = grad.to(torch.float64)
            total += grad / (grad.square().mean(dim=axes, keepdim=True).sqrt() + 1e-5)
        return (total / values.shape[1]).cpu().numpy().astype(np.float32)

    def loss_gradient(self, x: np.ndarray, labels: np.ndarray, *, target: int | None = None,
                      probabilities: bool = False, output: int = 0,
                      side: dict[str, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Gradient of the objective to ascend, and each sample's cross-entropy.

        Untargeted: the cross-entropy of the true label (ascend it). Targeted: minus the cross-entropy of
        ``target`` (ascending it moves towards the target). ``probabilities``: the scores are already
        softmax outputs.
        """
        xt = self._input(x)
        scores = self._forward(xt, side)[output].to(torch.float64)
        log_p = torch.log(scores.clamp_min(1e-12)) if probabilities else torch.log_softmax(scores, dim=-1)
        wanted = torch.from_numpy(np.asarray(labels if target is None else np.full(len(x), target), np.int64))
        loss = -log_p.gather(1, wanted.to(self.device)[:, None])[:, 0]
        (loss.sum() if target is None else -loss.sum()).backward()
        return xt.grad.detach().cpu().numpy(), loss.detach().cpu().numpy()

    def outputs(self, x: np.ndarray, side: dict[str, np.ndarray] | None = None) -> list[np.ndarray]:
        """Every output of the module for ``x``, as numpy (no gradient)."""
        with torch.no_grad():
            found = self._forward(torch.from_numpy(np.ascontiguousarray(x, np.float32)).to(self.device), side)
        return [value.detach().cpu().numpy() for value in found]

    def linear_objective(self, x: np.ndarray, class_weights: np.ndarray, groups: list[NeuronGroup],
                         neuron_weights: np.ndarray, *, probabilities: bool = False,
                         side: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """Gradient of Σ_c class_weights[c]·score_c + Σ_j neuron_weights[j]·value_j summed over the samples of
        ``x``: scores are output 0 (log-probabilities when ``probabilities``), values the ``groups``' neurons."""
        xt = self._input(x)
        outputs = self._forward(xt, side)
        scores = outputs[0].to(torch.float64)
        if probabilities:
            scores = torch.log(scores.clamp_min(1e-12))
        total = (scores * torch.from_numpy(np.asarray(class_weights, np.float64)).to(self.device)).sum()
        if groups:
            values = self._values(outputs, groups)
            total = total + (values * torch.from_numpy(np.asarray(neuron_weights, np.float64)).to(self.device)).sum()
        total.backward()
        return xt.grad.detach().cpu().numpy()

    def value_and_jacobian(self, x: np.ndarray, output: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """The flattened ``output`` at the single sample ``x`` (batch of 1) and its (out, in) Jacobian, in
        float64: for a piecewise-linear module, the exact linear map of the sample's linear region."""
        shape = x.shape[1:]

        def flat(xt: torch.Tensor) -> torch.Tensor:
            return self.module(xt.reshape(1, *shape))[output].reshape(-1)

        point = torch.from_numpy(np.ascontiguousarray(x, np.float32).reshape(-1)).to(self.device)
        with torch.no_grad():
            value = flat(point)
        jac = torch.autograd.functional.jacobian(flat, point, vectorize=True)
        return value.cpu().numpy().astype(np.float64), jac.detach().cpu().numpy().astype(np.float64)
