"""Fine-tuning an ONNX graph's weights in torch, for ``onnxfault retrain``: the initializers named become parameters
of the ONNX→torch module (:class:`~onnxfault.adapters.onnx2torch.module.OnnxModule`), trained by Adam on the
cross-entropy of the class scores, in inference semantics (BatchNormalization keeps its running statistics, Dropout
is off), seeded: on the CPU the same call gives the same weights to the bit."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
import torch

from .onnx2torch.module import OnnxModule


@dataclass(frozen=True)
class Schedule:
    """How to train: ``epochs`` passes over the samples in shuffled batches of ``batch_size``, Adam with ``lr``,
    shuffling and torch seeded by ``seed``. ``pgd`` (L∞ bound, steps, step size) adds to each batch its PGD
    adversarial examples against the current weights (Madry et al.'s adversarial training, no random start),
    within ``clip``."""

    epochs: int
    batch_size: int
    lr: float
    seed: int
    pgd: tuple[float, int, float] | None = None
    clip: tuple[float, float] = (0.0, 1.0)


def fine_tune(proto: onnx.ModelProto, masks: dict[str, np.ndarray | None], x: np.ndarray, y: np.ndarray,
              schedule: Schedule, probabilities: bool, device: str = "cpu") -> dict[str, np.ndarray]:
    """New values of the initializers ``masks`` names, trained on ``(x, y)``; a mask (bool, the initializer's
    shape) keeps the entries outside it as they are, None lets every entry change. ``proto``'s first output are
    the class scores (probabilities when ``probabilities``)."""
    torch.manual_seed(schedule.seed)
    module = OnnxModule(proto, trainable=frozenset(masks)).to(device).eval()
    for buffer in module.buffers():
        buffer.requires_grad_(False)
    params = {name: getattr(module, key) for name, key in module.parameter_of.items()}
    kept = {name: torch.from_numpy(np.asarray(m, np.bool_)).to(device) for name, m in masks.items() if m is not None}
    optimizer = torch.optim.Adam(list(params.values()), lr=schedule.lr)
    order_from = torch.Generator().manual_seed(schedule.seed)
    inputs, labels = torch.from_numpy(np.ascontiguousarray(x, np.float32)), torch.from_numpy(y.astype(np.int64))

    def loss_of(batch: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        scores = module(batch)[0]
        if probabilities:
            return torch.nn.functional.nll_loss(torch.log(scores.clamp_min(1e-12)), target)
        return torch.nn.functional.cross_entropy(scores, target)

    for _ in range(schedule.epochs):
        order = torch.randperm(len(inputs), generator=order_from)
        for start in range(0, len(inputs), schedule.batch_size):
            rows = order[start:start + schedule.batch_size]
            batch, target = inputs[rows].to(device), labels[rows].to(device)
            if schedule.pgd is not None:
                batch = torch.cat([batch, _pgd(loss_of, batch, target, schedule.pgd, schedule.clip)])
                target = torch.cat([target, target])
            optimizer.zero_grad()
            loss_of(batch, target).backward()
            for name, mask in kept.items():
                if params[name].grad is not None:
                    params[name].grad.mul_(mask)
            optimizer.step()
    return {name: p.detach().cpu().numpy() for name, p in params.items()}


def _pgd(loss_of, batch: torch.Tensor, target: torch.Tensor, settings: tuple[float, int, float],
         clip: tuple[float, float]) -> torch.Tensor:
    """PGD on the loss: ``steps`` sign steps of ``step``, projected on the L∞ ball of radius ``distance`` and into
    ``clip``; the weights get no gradient from it."""
    distance, steps, step = settings
    low, high = (batch - distance).clamp_min(clip[0]), (batch + distance).clamp_max(clip[1])
    adversarial = batch.detach().clone()
    for _ in range(steps):
        adversarial.requires_grad_(True)
        grad, = torch.autograd.grad(loss_of(adversarial, target), adversarial)
        adversarial = torch.max(torch.min(adversarial.detach() + step * grad.sign(), high), low)
    return adversarial.detach()
