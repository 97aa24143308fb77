"""Neuron Shapley values, as DeepSensor (Jin et al., "Excitement Surfeited Turns to Errors", 2022) uses them.

The players are the neurons of the chosen layers. The utility of a coalition S is the mean change of the
model's cross-entropy loss between the samples x and x + Δx (Gaussian noise of standard deviation
``noise``, drawn once per sample), computed with every neuron outside S set to zero::

    v(S) = mean_x [ L(x + Δx; S) − L(x; S) ]

Zeroing happens inside onnxruntime: graph surgery multiplies a mask input into each chosen tensor
(``graph.insert_masks``), so one run evaluates many (coalition, sample) rows. Exact Shapley values need
all 2ⁿ coalitions; they are estimated by Monte-Carlo permutation sampling: each random permutation adds
the players one at a time, and every player's marginal gain v(S ∪ {i}) − v(S) is one sample of its
value. The n + 1 nested coalitions of a permutation are evaluated together. The standard error is the
standard deviation of the gains over permutations / √permutations.

Normalisation (for "excitable" neurons, Definition 3: ψ(n) > λ): every value is divided by the largest
value among all the players (one scale for the whole game, whose values sum to v(N) − v(∅)), so the top
neuron scores 1 and λ = 0.5 keeps the neurons with at least half of its value. Raw values of this loss
change are far below the paper's λ = 0.5 (at most about 0.002–0.01 on the MNIST example models), hence the
scaling. A value of 0 stays 0 and a negative one stays negative: neither is ever excitable (λ ≥ 0).
When no value is positive, the scale is the largest magnitude (all scores ≤ 0); all zero gives zeros.
"""
from __future__ import annotations

from dataclasses import dataclass
from math import factorial
from typing import Callable

import numpy as np

from .errors import OnnxFaultError
from .graph import MASK, insert_masks
from .loss import cross_entropy
from .model import Layer, Model
from .spectrum import probe_axes

Utility = Callable[[np.ndarray], np.ndarray]  # (M, n) masks → (M,) utilities


@dataclass(frozen=True)
class ShapleyOptions:
    """How Shapley values are estimated (``--permutations``, ``--noise``, ``--shapley-samples``) and the
    excitability threshold ``--lambda`` on normalised values (ψ / max ψ, see :func:`normalize`)."""

    permutations: int = 20
    noise: float = 0.1
    samples: int = 100
    lambda_: float = 0.5

    def check(self) -> "ShapleyOptions":
        if self.permutations < 1:
            raise OnnxFaultError(f"`permutations` must be at least 1 (got {self.permutations})")
        if self.noise <= 0:
            raise OnnxFaultError(f"`noise` must be > 0 (got {self.noise})")
        if self.samples < 1:
            raise OnnxFaultError(f"`shapley_samples` must be at least 1 (got {self.samples})")
        if not 0 <= self.lambda_ <= 1:
            raise OnnxFaultError(f"`lambda_` must be in [0, 1] (normalised Shapley values; got {self.lambda_})")
        return self

    def params(self) -> dict:
        """The settings as result files record them (the CLI's flag names)."""
        return {"permutations": self.permutations, "noise": self.noise, "shapley_samples": self.samples,
                "lambda": self.lambda_}


@dataclass
class ShapleyEstimate:
    """Per neuron (layers concatenated in order): the value, its standard error, the normalised value
    (ψ / max ψ: excitable when above λ)."""

    values: np.ndarray
    stderr: np.ndarray
    normalized: np.ndarray
    permutations: int


# ---- math ------------------------------------------------------------------------------------------------
def prefix_masks(permutations: np.ndarray) -> np.ndarray:
    """(P·(n+1), n) 0/1 float32 masks: per permutation, the coalitions of its first 0, 1, …, n players."""
    p, n = permutations.shape
    position = np.argsort(permutations, axis=1)  # where each player stands in its permutation
    masks = position[:, None, :] < np.arange(n + 1)[None, :, None]
    return masks.reshape(p * (n + 1), n).astype(np.float32)


def marginal_gains(utilities: np.ndarray, permutations: np.ndarray) -> np.ndarray:
    """(P, n) gain of each player in each permutation, from the (P, n+1) utilities of its prefixes."""
    gains = np.diff(utilities, axis=1)  # gains[p, j] belongs to player permutations[p, j]
    out = np.empty_like(gains)
    np.put_along_axis(out, permutations, gains, axis=1)
    return out


def monte_carlo_shapley(utility: Utility, n: int, permutations: int | np.ndarray,
                        seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(values, standard errors) from ``permutations`` random permutations (or the given (P, n) array)."""
    if isinstance(permutations, np.ndarray):
        perms = permutations
    else:
        if permutations < 1:
            raise OnnxFaultError(f"`permutations` must be at least 1 (got {permutations})")
        rng = np.random.default_rng(seed)
        perms = np.stack([rng.permutation(n) for _ in range(permutations)]) if n else np.zeros((permutations, 0), int)
    utilities = utility(prefix_masks(perms)).reshape(len(perms), n + 1).astype(np.float64)
    gains = marginal_gains(utilities, perms)
    stderr = gains.std(axis=0, ddof=1) / np.sqrt(len(perms)) if len(perms) > 1 else np.zeros(n)
    return gains.mean(axis=0), stderr


def exact_shapley(utility: Utility, n: int) -> np.ndarray:
    """Shapley values by enumerating all 2ⁿ coalitions (small n only)."""
    if n > 20:
        raise OnnxFaultError(f"exact Shapley values for {n} players need 2^{n} coalitions; use Monte-Carlo")
    codes = np.arange(2 ** n)
    masks = ((codes[:, None] >> np.arange(n)) & 1).astype(np.float32)
    u = utility(masks).astype(np.float64)
    sizes = masks.sum(axis=1).astype(int)
    weight = np.array([factorial(s) * factorial(n - s - 1) / factorial(n) for s in range(n)])
    values = np.zeros(n)
    for i in range(n):
        without = codes[(codes >> i) & 1 == 0]
        values[i] = (weight[sizes[without]] * (u[without | (1 << i)] - u[without])).sum()
    return values


def normalize(values: np.ndarray) -> np.ndarray:
    """ψ / max ψ over all players (the largest magnitude when none is positive); zero and negative
    values keep their sign, so they are never above λ ≥ 0 (see the module docstring)."""
    values = np.asarray(values, dtype=np.float64)
    scale = values.max() if len(values) and values.max() > 0 else np.abs(values).max(initial=0.0)
    return values / scale if scale > 0 else np.zeros_like(values)


# ---- the model's game ------------------------------------------------------------------------------------
def masked_model(model: Model, layers: list[Layer], granularity: str, device: str = "auto"):
    """A session over ``model`` with the mask input on the chosen layers, and the neuron count."""
    probes = [(layer.tensor, layer.shape, layer.channel_axis if probe_axes(layer, granularity) else None)
              for layer in layers]
    session = model.session_for(insert_masks(model.scores_only(), probes), device)
    return session, sum(layer.neurons(granularity) for layer in layers)


def loss_change_utility(session, x: np.ndarray, labels: np.ndarray, noise: float, probabilities: bool,
                        seed: int = 0, rows: int = 8192) -> Utility:
    """v(S) = mean loss change between x and x + noise·N(0, 1) with the neurons outside S zeroed."""
    noisy = (x + noise * np.random.default_rng(seed).standard_normal(x.shape)).astype(np.float32)
    both = np.concatenate([x, noisy])
    twice = np.concatenate([labels, labels])
    per_call = max(1, rows // len(both))
    tiled_inputs = np.tile(both, (per_call,) + (1,) * (both.ndim - 1))  # built once, sliced per chunk
    tiled_labels = np.tile(twice, per_call)

    def utility(masks: np.ndarray) -> np.ndarray:
        out = np.empty(len(masks))
        for start in range(0, len(masks), per_call):
            chunk = masks[start:start + per_call]
            size = len(chunk) * len(both)
            scores = session.run(tiled_inputs[:size], {MASK: np.repeat(chunk, len(both), axis=0)})[0]
            loss = cross_entropy(scores, tiled_labels[:size], probabilities).reshape(len(chunk), 2, len(x))
            out[start:start + len(chunk)] = (loss[:, 1] - loss[:, 0]).mean(axis=1)
        return out

    return utility


def neuron_shapley(model: Model, x: np.ndarray, labels: np.ndarray, layers: list[Layer], *,
                   granularity: str = "channel", options: ShapleyOptions = ShapleyOptions(), seed: int = 0,
                   device: str = "auto") -> ShapleyEstimate:
    """Monte-Carlo Shapley values of every neuron of ``layers`` for the loss change on (x, labels)."""
    options.check()
    if len(x) == 0:
        raise OnnxFaultError("no samples to estimate Shapley values on; use more data")
    session, n = masked_model(model, layers, granularity, device)
    utility = loss_change_utility(session, x, labels, options.noise, model.scores_are_probabilities, seed)
    values, stderr = monte_carlo_shapley(utility, n, options.permutations, seed)
    return ShapleyEstimate(values, stderr, normalize(values), options.permutations)
