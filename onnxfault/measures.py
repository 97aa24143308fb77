"""Suspiciousness measures: one registry, one signature.

Every measure maps the counts of all neurons to one float64 score each (higher = more suspicious)::

    measure(as_, af, ns, nf, *, star=3.0, seed=0) -> np.ndarray

Notation: F = af + nf (failing samples), P = as + ns (passing samples). Every x/0 case is defined,
so scores are always finite (JSON stays valid): a ratio whose denominator is 0 counts as 0, except
where a measure's entry says otherwise.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .errors import close_matches_hint, OnnxFaultError

MeasureFn = Callable[..., np.ndarray]


@dataclass(frozen=True)
class Measure:
    name: str
    fn: MeasureFn
    formula: str
    reference: str
    needs_model: bool = False  # scores come from the model itself, not from the counts


MEASURES: dict[str, Measure] = {}
_ALIASES: dict[str, str] = {}


def register(name: str, formula: str, reference: str, aliases: tuple[str, ...] = (), needs_model: bool = False):
    """Decorator adding a measure to the registry under ``name`` (and ``aliases``)."""

    def add(fn: MeasureFn) -> MeasureFn:
        MEASURES[name] = Measure(name, fn, formula, reference, needs_model)
        for alias in aliases:
            _ALIASES[alias] = name
        return fn

    return add


def _div(num, den) -> np.ndarray:
    """num / den elementwise, 0 where den == 0."""
    num, den = np.asarray(num, np.float64), np.asarray(den, np.float64)
    out = np.zeros(np.broadcast(num, den).shape)
    np.divide(num, den, out=out, where=den != 0)
    return out


def _f(*arrays):
    return [np.asarray(a, np.float64) for a in arrays]


@register("tarantula", "(af/F) / (af/F + as/P); each ratio 0 when its denominator is 0; 0 when both are 0",
          "Jones & Harrold, ASE 2005")
def tarantula(as_, af, ns, nf, **_):
    as_, af, ns, nf = _f(as_, af, ns, nf)
    fail_ratio, pass_ratio = _div(af, af + nf), _div(as_, as_ + ns)
    return _div(fail_ratio, fail_ratio + pass_ratio)


@register("ochiai", "af / sqrt(F · (af + as)); 0 when F = 0 or the neuron is never active",
          "Abreu et al., PRDC 2006")
def ochiai(as_, af, ns, nf, **_):
    as_, af, ns, nf = _f(as_, af, ns, nf)
    return _div(af, np.sqrt((af + nf) * (af + as_)))


@register("dstar", "af^* / (as + nf); when as + nf = 0: F^* + 1 (above any finite D* value) if af > 0, else 0",
          "Wong et al., IEEE TR 2014", aliases=("d*", "d_star"))
def dstar(as_, af, ns, nf, *, star: float = 3.0, **_):
    as_, af, ns, nf = _f(as_, af, ns, nf)
    num, den = af ** star, as_ + nf
    # den == 0 means nf == 0, so af == F: the neuron is active on every failing and no passing sample.
    top = (af + nf) ** star + 1.0
    return np.where(den == 0, np.where(af > 0, top, 0.0), _div(num, den))


@register("ochiai2", "af·ns / sqrt((af+as)(nf+ns)(af+nf)(as+ns)); 0 when any factor is 0",
          "Naish et al., TOSEM 2011")
def ochiai2(as_, af, ns, nf, **_):
    as_, af, ns, nf = _f(as_, af, ns, nf)
    return _div(af * ns, np.sqrt((af + as_) * (nf + ns) * (af + nf) * (as_ + ns)))


@register("jaccard", "af / (af + nf + as); 0 when the denominator is 0", "Chen et al., DSN 2002")
def jaccard(as_, af, ns, nf, **_):
    as_, af, ns, nf = _f(as_, af, ns, nf)
    return _div(af, af + nf + as_)


@register("kulczynski2", "(af/(af+nf) + af/(af+as)) / 2; each ratio 0 when its denominator is 0",
          "Naish et al., TOSEM 2011")
def kulczynski2(as_, af, ns, nf, **_):
    as_, af, ns, nf = _f(as_, af, ns, nf)
    return 0.5 * (_div(af, af + nf) + _div(af, af + as_))


@register("op2", "af − as / (P + 1); always defined", "Naish et al., TOSEM 2011")
def op2(as_, af, ns, nf, **_):
    as_, af, ns, nf = _f(as_, af, ns, nf)
    return af - as_ / (as_ + ns + 1.0)


@register("barinel", "1 − as / (as + af); 0 when the neuron is never active", "Abreu et al., ASE 2009")
def barinel(as_, af, ns, nf, **_):
    as_, af, ns, nf = _f(as_, af, ns, nf)
    return np.where(as_ + af == 0, 0.0, 1.0 - _div(as_, as_ + af))


@register("zoltar", "af / (af + nf + as + 10000·nf·as/af); 0 when af = 0", "Gonzalez, MSc thesis 2007")
def zoltar(as_, af, ns, nf, **_):
    as_, af, ns, nf = _f(as_, af, ns, nf)
    return _div(af, af + nf + as_ + _div(10000.0 * nf * as_, af))


@register("russellrao", "af / (af + nf + as + ns); 0 when there are no samples", "Russell & Rao 1940",
          aliases=("russell-rao", "russell_rao"))
def russellrao(as_, af, ns, nf, **_):
    as_, af, ns, nf = _f(as_, af, ns, nf)
    return _div(af, af + nf + as_ + ns)


@register("sorensendice", "2af / (2af + nf + as); 0 when the denominator is 0", "Dice 1945",
          aliases=("sorensen-dice", "dice", "sørensen-dice"))
def sorensendice(as_, af, ns, nf, **_):
    as_, af, ns, nf = _f(as_, af, ns, nf)
    return _div(2.0 * af, 2.0 * af + nf + as_)


@register("wong2", "af − as; always defined", "Wong et al., COMPSAC 2007")
def wong2(as_, af, ns, nf, **_):
    as_, af, ns, nf = _f(as_, af, ns, nf)
    return af - as_


@register("random", "uniform random scores from numpy's default_rng(seed): a baseline",
          "a random baseline (DeepFault, Eniser et al., FASE 2019, compares with random neurons)")
def random(as_, af, ns, nf, *, seed: int = 0, **_):
    return np.random.default_rng(seed).random(np.shape(as_))


@register("shapley", "Monte-Carlo Shapley value of the neuron for the loss change under input noise, divided "
          "by the largest value over the chosen layers (see onnxfault.shapley)", "DeepSensor (Jin et al., 2022)", needs_model=True)
def shapley(as_, af, ns, nf, **_):
    raise OnnxFaultError("the shapley measure is computed from the model, not from spectrum counts; "
                         "use localize(..., measure='shapley')")


def get_measure(name: str) -> Measure:
    """Look a measure up by name or alias (case-insensitive)."""
    key = name.lower()
    key = _ALIASES.get(key, key)
    if key not in MEASURES:
        raise OnnxFaultError(close_matches_hint(name, sorted(MEASURES), "measure"))
    return MEASURES[key]


def score(name: str, counts: np.ndarray, *, star: float = 3.0, seed: int = 0) -> np.ndarray:
    """Scores for ``counts`` of shape (4, neurons) = (as, af, ns, nf)."""
    as_, af, ns, nf = counts
    return get_measure(name).fn(as_, af, ns, nf, star=star, seed=seed)


def rank(scores: np.ndarray, layer: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Positions sorted best first: score descending; equal scores put the deeper layer (higher ``layer``,
    later in graph order) first, as DeepFault's Algorithm 1 resolves ties (Eniser et al., section 3.2), and
    then the lower index (deterministic)."""
    return np.lexsort((index, -np.asarray(layer), -scores))
