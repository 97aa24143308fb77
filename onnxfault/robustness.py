"""``robustness``: how hard a model is to fool, and how natural a run's inputs are.

- **CLEVER** (Weng et al., ICLR 2018): ART's own implementation (``art.metrics.clever_u``, untargeted) on the
  model's ONNX→torch module wrapped as ART's ``PyTorchClassifier``, per seed: ``batches`` (N_b) batches of
  ``batch_size`` (N_s) points sampled in the ``norm`` ball of ``radius`` (DeepSensor's RQ2: N_b 500, N_s 1024;
  the defaults here are smaller, the cost grows with N_b · N_s · classes). Seeded: numpy's global generator
  is seeded for ART and given back.
- **ASR** under PGD: the share of correctly classified seeds (``samples`` per class) that PGD at L∞
  ``attack_distance`` (20 steps of a tenth of it) misclassifies.
- **FID** (Fréchet distance between Gaussians fitted to features) between a run's synthesized inputs and its seeds,
  on the features of a network you name (``features="model.onnx:tensor"``; no Inception weights are available
  offline: the number is only comparable between runs measured on the same features).
"""
from __future__ import annotations

import sys
import types
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .data import DataLike, DataOptions
from .errors import OnnxFaultError, check_arguments, check_finite, warn
from .model import as_model
from .model_forms import ModelLike
from .provenance import stamp
from .results import header, provenance_of

NORMS = {"inf": np.inf, "2": 2, "1": 1}


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """FID's formula on two feature sets (rows are samples): ‖μa − μb‖² + Tr(Σa + Σb − 2 (Σa Σb)^½), covariances
    with N − 1."""
    from scipy import linalg

    a, b = np.asarray(a, np.float64).reshape(len(a), -1), np.asarray(b, np.float64).reshape(len(b), -1)
    if len(a) < 2 or len(b) < 2:
        raise OnnxFaultError("FID needs at least two samples on each side")
    sa, sb = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    with warnings.catch_warnings():  # a singular product (dead features) still has its square root, or 0s
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        root = np.real(linalg.sqrtm(sa @ sb))
    return float(np.sum((a.mean(axis=0) - b.mean(axis=0)) ** 2) + np.trace(sa + sb - 2 * root))


@dataclass
class RobustnessResult:
    """What ``robustness`` measured: per seed CLEVER (``clever``), PGD's attack success rate (``attack_success_rate``)
    and, with a run and a feature network, FID between the run's inputs and its seeds (``fid``)."""

    kind = "robustness"

    model: str
    data: str
    params: dict
    clever: list[float]
    attack_success_rate: float
    seeds: int
    fid: float | None = None
    inputs: str | None = None
    warnings: list[str] = field(default_factory=list)
    provenance: dict = field(default_factory=dict)

    @property
    def clever_mean(self) -> float | None:
        return float(np.mean(self.clever)) if self.clever else None

    def to_json(self) -> dict:
        return {**header(self.kind), "model": self.model, "data": self.data, "inputs": self.inputs,
                "params": dict(self.params), "seeds": self.seeds, "clever": list(self.clever),
                "clever_mean": self.clever_mean, "attack_success_rate": self.attack_success_rate, "fid": self.fid,
                "warnings": list(self.warnings), **self.provenance}

    @classmethod
    def from_json(cls, data: dict) -> "RobustnessResult":
        return cls(data["model"], data["data"], data["params"], [float(v) for v in data["clever"]],
                   data["attack_success_rate"], data["seeds"], data.get("fid"), data.get("inputs"),
                   list(data.get("warnings", [])), provenance_of(data))

    def save(self, path: str | Path) -> Path:
        """Write :meth:`to_json` to ``path`` whole (see :mod:`onnxfault.files`)."""
        from .files import write_json

        return write_json(path, self.to_json())

    def lines(self) -> list[str]:
        p = self.params
        out = [f"robustness of {self.seeds} seeds: PGD (L∞ {p['attack_distance']:g}) success "
               f"{100 * self.attack_success_rate:.1f} %"]
        if self.clever:
            out.append(f"  CLEVER (L{p['norm']}, N_b {p['batches']}, N_s {p['batch_size']}, radius {p['radius']:g}) "
                       f"mean {self.clever_mean:.4f}, least {min(self.clever):.4f} over {len(self.clever)} seeds")
        if self.fid is not None:
            out.append(f"  FID {self.fid:.4f} between the inputs of {self.inputs} and their seeds "
                       f"(features {p['features']})")
        return out

    def _report_run(self):
        from .report.results import memory_run

        return memory_run("robustness", self.to_json())

    def _repr_html_(self) -> str:
        from .report import result_html

        return result_html(self)

    def __repr__(self) -> str:
        return (f"<RobustnessResult ASR {100 * self.attack_success_rate:.1f}%, CLEVER "
                f"{'n/a' if self.clever_mean is None else f'{self.clever_mean:.4f}'}>")


def robustness(model: ModelLike, data: DataLike, *, samples: int = 2, seed: int = 0, norm: str = "inf",
               batches: int = 10, batch_size: int = 32, radius: float = 0.3, clever_seeds: int = 10,
               attack_distance: float = 0.3, features: str | None = None, inputs=None, device: str = "cpu",
               data_options: DataOptions | None = None, output: str | None = None) -> RobustnessResult:
    """PGD's success on ``samples`` correctly classified seeds per class of ``data``, CLEVER on the first
    ``clever_seeds`` of them (0: none), and with ``inputs`` (a synthesize run) and ``features``
    (``model.onnx:tensor``) the FID between the run's inputs and its seeds; see the module docstring."""
    from .synthesis import synthesize

    check_arguments(samples=(samples, int, 1), seed=(seed, int, 0), norm=(norm, str), batches=(batches, int, 1),
                    batch_size=(batch_size, int, 1), radius=(radius, float), clever_seeds=(clever_seeds, int, 0),
                    attack_distance=(attack_distance, float), features=(features, (str, None)),
                    device=(device, str), output=(output, (str, None)))
    check_finite(radius=radius, attack_distance=attack_distance)
    if norm not in NORMS:
        raise OnnxFaultError(f"`norm` must be inf, 2 or 1 (got {norm!r})", parameter="norm")
    if not radius > 0 or not attack_distance > 0:
        raise OnnxFaultError("`radius` and `attack_distance` must be above 0",
                             parameter="radius" if not radius > 0 else "attack_distance")
    if (features is None) != (inputs is None):
        raise OnnxFaultError("FID compares a run's inputs with its seeds on a feature network: give both `inputs` "
                             "and `features`, or neither", parameter="features" if features is None else "inputs")
    loaded = as_model(model, output)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        attacked = synthesize(loaded, data, method="pgd", samples=samples, seed=seed, distance=attack_distance,
                              step=attack_distance / 10, iterations=20, device=device, data_options=data_options)
    seeds = attacked.arrays["original"]
    clever = _clever(loaded, seeds[:clever_seeds], attacked.clip, NORMS[norm], batches, batch_size, radius, seed,
                     device) if clever_seeds else []
    fid = _fid(features, inputs, device) if features is not None else None
    result = RobustnessResult(
        loaded.path, attacked.report["data"],
        {"samples": samples, "seed": seed, "norm": norm, "batches": batches, "batch_size": batch_size,
         "radius": radius, "clever_seeds": clever_seeds, "attack_distance": attack_distance, "features": features,
         "clip": [float(v) for v in attacked.clip]},
        clever, attacked.success_rate, len(seeds), fid, None if inputs is None else str(inputs),
        list(loaded.notes), stamp(loaded))
    warn(result.warnings)
    return result


def _clever(model, seeds: np.ndarray, clip, norm, batches: int, batch_size: int, radius: float, seed: int,
            device: str) -> list[float]:
    """ART's untargeted CLEVER per seed, numpy's global generator seeded for it and given back."""
    try:
        from art.metrics import clever_u
    except ImportError:
        raise OnnxFaultError("CLEVER is ART's: install it with `pip install 'onnxfault[art]'`, or pass "
                             "`clever_seeds` 0") from None
    from .adapters.gradients import Differentiable
    from .synthesis.art_attacks import _no_progress_bars, art_classifier

    full = Differentiable(model.scores_only(), device)
    classifier = art_classifier(full, tuple(seeds.shape[1:]), model.num_classes, clip, model.scores_are_probabilities)
    saved = np.random.get_state()
    try:
        out = []
        with _no_progress_bars():
            for i, x in enumerate(seeds):
                np.random.seed((seed * 1_000_003 + i) % 2**32)
                out.append(float(clever_u(classifier, x, batches, batch_size, radius, norm, verbose=False)))
        return out
    finally:
        np.random.set_state(saved)


def _fid(features: str, inputs, device: str) -> float:
    """FID between a run's synthesized inputs and its seeds on ``model.onnx:tensor``'s values."""
    from .model import load_model
    from .results import load
    from .synthesis import SynthesisResult

    path, sep, tensor = features.rpartition(":")
    if not sep or not path or not tensor:
        raise OnnxFaultError(f"`features` must be MODEL:TENSOR, e.g. lenet.onnx:relu3 (got {features!r})",
                             parameter="features")
    run = inputs if isinstance(inputs, SynthesisResult) else load(inputs)
    if not isinstance(run, SynthesisResult):
        raise OnnxFaultError(f"{inputs} is a {run.kind} result, not a synthesize run", parameter="inputs")
    net = load_model(path)
    session = net.session(device, [tensor])
    values = [session.run(run.arrays[name])[-1] for name in ("synthesized", "original")]
    return frechet_distance(*values)


class _CallableModule(types.ModuleType):
    """``onnxfault.robustness`` is this module once it is imported: calling it runs :func:`robustness`."""

    def __call__(self, *args, **kwargs) -> RobustnessResult:
        return robustness(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
