"""The one registry of synthesis methods: what each method is (name, summary, defaults, options, whether it
uses suspicious neurons or torch) is declared here, and its module, which defines ``run(problem)`` (and
``summarize(cache, seeds)`` for its own report keys), is imported only when its ``run`` is asked for. So
listing the methods, or running fgsm, imports no other method's dependencies (scipy for ``patch``).

Imports flow one way: a method module imports ``base``; neither ``base`` nor this registry imports a method
at import time."""
from __future__ import annotations

from dataclasses import dataclass, field
from importlib import import_module
from typing import Callable

from ..errors import OnnxFaultError, close_matches_hint

__all__ = ["METHODS", "Method", "get_method"]


@dataclass(frozen=True)
class Method:
    """A registered method. ``defaults``: step, distance, iterations, epsilon; ``options``: its own settings and
    their defaults (recorded in every report); ``uses_neurons``: it perturbs towards suspicious neurons, so
    ``synthesize`` ranks them first (fgsm, pgd and patch use none and skip the spectrum); ``uses_torch``: it
    differentiates through the ONNX→torch adapter (deepsensor runs forward passes only); ``embeddings``: it runs
    on a text model too, perturbing the token embeddings (see :mod:`onnxfault.synthesis.embedding`); ``text_only``:
    only there."""

    name: str  # also its module's, in onnxfault.synthesis
    summary: str
    defaults: dict
    options: dict = field(default_factory=dict)
    uses_neurons: bool = True
    uses_torch: bool = True
    embeddings: bool = False  # it also runs on text models, in their token-embedding space (synthesis.embedding)
    text_only: bool = False  # it runs on text models only (it substitutes tokens)

    def _module(self):
        return import_module(f"{__package__}.{self.name}")

    @property
    def run(self) -> Callable:
        """``run(problem) -> synthesized inputs`` (imports the method's module)."""
        return self._module().run

    @property
    def summarize(self) -> Callable[[dict, int], dict] | None:
        """``summarize(problem cache, seeds) -> extra report keys``, or None (imports the method's module)."""
        return getattr(self._module(), "summarize", None)


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("deepfault", "DeepFault: ascend the mean of the suspicious neurons on the full model (L∞)",
           dict(step=1.0, distance=0.1, iterations=1, epsilon=0.0), {"gradient": "normalized"}, embeddings=True),
    Method("hs", "HS-FGSM: gradient (or sign) steps on the suspicious neurons through a sub-model cut at their "
           "layer", dict(step=0.0, distance=None, iterations=5, epsilon=1.0), {"step_rule": "gradient"},
           embeddings=True),
    Method("fgsm", "FGSM baseline: one L∞ sign step on the cross-entropy (untargeted or --target)",
           dict(step=0.0, distance=0.1, iterations=1, epsilon=0.0), uses_neurons=False, embeddings=True),
    Method("pgd", "PGD baseline: projected L∞ sign steps on the cross-entropy (untargeted or --target)",
           dict(step=0.01, distance=0.1, iterations=20, epsilon=0.0), uses_neurons=False, embeddings=True),
    Method("deepsensor", "DeepSensor: particle swarms activating the excitable (high-Shapley) neurons",
           dict(step=0.0, distance=0.1, iterations=20, epsilon=0.0),
           {"population": 100, "stop_fitness": 1.0, "inertia": (0.4, 0.9)},  # deepsensor.INERTIA
           uses_torch=False),
    Method("patch", "AIGENT: patch edge-layers by linear programs, then solve for the input change",
           dict(step=0.0, distance=0.1, iterations=1, epsilon=0.0),
           {"objective": "pixels", "max_pixels": None, "time_limit": 10.0,  # then aigent.Settings' defaults
            "relaxation": "region", "phases": "free", "weight_change": "total", "alpha": None, "hold_inactive": False},
           uses_neurons=False),  # torch: for a CNN's conv prefix (imported before the clock all the same)
    Method("hotflip", "HotFlip (text models): the token substitutions that most raise the suspicious neurons "
           "(or the loss, --goal loss) to first order, each checked on the model",
           dict(step=0.0, distance=None, iterations=1, epsilon=0.0),
           {"goal": "neurons", "max_flips": 5, "candidates": 8}, embeddings=True, text_only=True),
)}


def get_method(name: str) -> Method:
    """The registered method called ``name`` (an unknown name fails with the close ones)."""
    if name not in METHODS:
        raise OnnxFaultError(close_matches_hint(name, sorted(METHODS), "method"))
    return METHODS[name]
