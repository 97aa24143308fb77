"""AIGENT's linear programs (Khan et al., "Efficient Adversarial Input Generation via Neural Net
Patching": Algorithm 1, section A), for one seed of a :class:`~onnxfault.synthesis.chain.DenseChain`.
Pure math, solved with SciPy's HiGHS (``linprog``/``milp``).

``chain.weights[l]`` (edge-layer l) maps h_(l−1) to the pre-activations z_l, h_l = act(z_l); the last z is
the logits. A *property* on layer e is a set of rows G z_e ≥ g0. It starts on the logits: "class c beats the
seed's label" (one row; any misclassification is a detected defect) or, for a target, "c beats every class".

1. ``patch_layer`` patches edge-layer m (the weights and bias into layer m; the bias is the weight on a
   constant input 1, the paper's bias-free conversion): a linear program over the layer's new values
   u = h'_m such that the property holds, with the layers strictly between m and e linear in the seed's
   phases. Δz_i = Σ_j ΔW_ij h_j is reached with the smallest largest |ΔW_ij| by
   ΔW_ij = Δz_i·sign(h_j)/‖h‖₁, so each weight change into neuron i has the sign of Δz_i times sign(h_j)
   and none where h_j = 0 (the paper's sign rule). The increment/decrement marking (sign of the summed
   property rows per neuron) fixes the sign of Δz_i; when that makes the LP infeasible the signs are free.
   The LP minimises the total change Σ|Δh_i| (``weight_change`` "total", the paper's "magnitude of the
   total change") or the largest one ("max", Goldberger et al.'s M; then the total), optionally with every
   |ΔW_ij| ≤ α (``alpha``).
   ``phases`` "free": the patched layer's neurons may switch on or off (the patch sets z_m; the LP counts a
   switched-on neuron's change from 0); "seed": they keep the seed's phases, as the paper fixes them.
2. ``relaxed_property`` turns "layer m takes the values u" (the paper's φ′, equalities) into the property of
   the network cut at m, as rows on z_m. ``relaxation`` "region": the property itself, pulled back through
   layer m with the patch's on/off pattern (phases held only where a neuron's switch could hurt), sound
   wherever the unpatched layers in between keep the seed's phases.
   "paper": each neuron marked increment (decrement) by the summed rows keeps h ≥ u (h ≤ u), the others
   h = u; sound only when every row agrees with the marking — the onnxruntime re-check decides.
3. Algorithm 1 patches edge-layer p = ⌈l/2⌉ of the l = L + 1 layers (0-based m = L // 2 for L edge-layers),
   cuts the network after it and repeats with m ← m // 2 (the authors' code; the printed update l ← p + 1
   would pick edge-layer 2 again when p = 2) until edge-layer 0 is patched. ``input_change`` (mod2adv) then
   solves for δ with z_0 = z_00 + A δ (A = W_0 J, J the prefix's Jacobian) meeting the last property,
   |δ_i| ≤ d and x + δ in the valid range, minimising changed input elements (MILP) or ‖δ‖₁ (LP).

Why these defaults (benchmarks/RESULTS.md, AIGENT): with the seed's phases a patch can only move the neurons
that are active at the seed (2.7 of 8 in the first layer of the authors' MNIST model), and the marking's
inequalities pin every neuron of the cut layer, so most attempts stopped at an infeasible patch of
edge-layer 0; the paper's choices stay reachable as ``--relaxation paper --phases seed``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, linprog, milp

from ..quiet import silenced_fds
from .chain import DenseChain

MARGIN = 1e-2  # the wanted class beats the other logit(s) by this much
PHASE = 1e-6  # active pre-activations stay at least this far above 0
TOL = 1e-12  # a property coefficient smaller than this counts as 0


@dataclass(frozen=True)
class Settings:
    """The algorithm's choices (module docstring); the defaults are onnxfault's."""

    relaxation: str = "region"  # region | paper
    phases: str = "free"  # free | seed
    weight_change: str = "total"  # total | max
    alpha: float | None = None  # bound on every |ΔW_ij|
    hold_inactive: bool = False  # hold inactive neurons of the unpatched layers between m and e inactive too
    goal: str = "flip"  # flip: c beats the seed's label | wins: c beats every class (a target)


@dataclass
class Property:
    """Rows ``G v ≥ g0`` on the pre-activations v of layer ``layer``."""

    layer: int
    G: np.ndarray
    g0: np.ndarray


@dataclass
class Seed:
    """One seed's linear region: pre-activations, layer inputs and gates (slope per neuron)."""

    zs: list[np.ndarray]
    hs: list[np.ndarray]
    gates: list[np.ndarray]


def region(chain: DenseChain, prefix_value: np.ndarray) -> Seed:
    zs, hs = chain.forward(prefix_value)
    gates = [np.where(z > 0, 1.0, slope) for z, slope in zip(zs, chain.slopes)]
    return Seed(zs, hs, gates)


def goal(num_classes: int, cls: int, label: int, layer: int, kind: str = "flip") -> Property:
    """Logit ``cls`` beats logit ``label`` (``flip``) or every other logit (``wins``) by MARGIN."""
    others = [label] if kind == "flip" else [i for i in range(num_classes) if i != cls]
    G = np.zeros((len(others), num_classes))
    G[np.arange(len(others)), cls] = 1.0
    G[np.arange(len(others)), others] = -1.0
    return Property(layer, G, np.full(len(others), MARGIN))


def rows_on_h(chain: DenseChain, seed: Seed, prop: Property, m: int,
              hold_inactive: bool = False) -> tuple[np.ndarray, np.ndarray, int]:
    """The property and the seed's phases of layers m+1 … e−1 (active ones; inactive ones too with
    ``hold_inactive``) as rows A h_m ≥ a on layer m's values; and how many of them are the property's."""
    n = len(seed.zs[m])
    M, c = np.eye(n), np.zeros(n)  # the current layer's values as M h_m + c
    rows, rhs = [], []
    for l in range(m + 1, prop.layer + 1):
        M, c = chain.weights[l] @ M, chain.weights[l] @ c + chain.biases[l]  # z_l
        if l == prop.layer:
            break
        active = seed.zs[l] > 0
        keep = active | hold_inactive
        sign = np.where(active, 1.0, -1.0)[keep]
        rows.append(sign[:, None] * M[keep])
        rhs.append(np.where(active, PHASE, 0.0)[keep] - sign * c[keep])
        M, c = seed.gates[l][:, None] * M, seed.gates[l] * c  # h_l
    return np.vstack([prop.G @ M, *rows]), np.concatenate([prop.g0 - prop.G @ c, *rhs]), len(prop.G)


@dataclass
class Patch:
    """A patch of edge-layer m: the layer's new values u = h'_m, its pre-activations and ΔW_m."""

    u: np.ndarray
    z_new: np.ndarray  # the patched layer simulated on the seed
    delta_w: np.ndarray  # (out, in + 1): the last column patches the bias
    rows: np.ndarray  # rows @ u ≥ rhs: the property (first ``goals`` rows) and the phases it relies on
    rhs: np.ndarray
    goals: int


def _inverse(u: np.ndarray, slope: float) -> np.ndarray:
    """The largest z with act(z) = u."""
    return np.maximum(u, 0.0) if slope == 0 else np.where(u > 0, u, u / slope)


def _change_bounds(seed: Seed, m: int, slope: float, settings: Settings,
                   h_norm: float) -> tuple[np.ndarray, np.ndarray]:
    """Bounds on d = u − h_m: u ≥ 0 for a free ReLU layer, the seed's phases otherwise; |Δz| ≤ α‖h‖₁."""
    z, h = seed.zs[m], seed.gates[m] * seed.zs[m]
    n, active = len(z), z > 0
    if settings.phases == "free":
        low, high = (-h if slope == 0 else np.full(n, -np.inf)), np.full(n, np.inf)
    else:  # active stays active; an inactive ReLU stays at 0, an inactive LeakyReLU moves on its slope
        low = np.where(active, PHASE - h, -np.inf if slope > 0 else 0.0)
        high = np.where(active | (slope > 0), np.inf, 0.0)
    if settings.alpha is not None:
        low, high = np.maximum(low, -settings.alpha * h_norm), np.minimum(high, settings.alpha * h_norm)
    return low, high


def patch_layer(chain: DenseChain, seed: Seed, prop: Property, m: int, settings: Settings = Settings()) -> Patch | None:
    """The smallest patch of edge-layer m that makes ``prop`` hold (module docstring), or None when its LP
    is infeasible."""
    A, a, goals = rows_on_h(chain, seed, prop, m, settings.hold_inactive)
    h_in = np.append(seed.hs[m], 1.0)  # the bias is the weight on a constant input 1
    z, h, slope = seed.zs[m], seed.gates[m] * seed.zs[m], chain.slopes[m]
    h_norm = float(np.abs(h_in).sum())
    low, high = _change_bounds(seed, m, slope, settings, h_norm)
    marking = np.sign(A[:goals].sum(axis=0))
    d = None
    for signs in (marking, None):  # the marking's signs first, then free signs
        lo = low if signs is None else np.where(signs < 0, low, np.maximum(low, 0.0))
        hi = high if signs is None else np.where(signs > 0, high, np.minimum(high, 0.0))
        if d is None and (lo <= hi).all():
            d = _smallest_change(A, a - A @ h, lo, hi, settings.weight_change)
    if d is None:
        return None
    u = h + d
    if settings.phases == "free":  # an inactive ReLU neuron left at 0 keeps its z
        z_target = np.where((slope == 0) & (u <= PHASE) & (z <= 0), z, _inverse(u, slope))
    else:
        z_target = z + np.divide(d, seed.gates[m], out=np.zeros_like(d), where=seed.gates[m] > 0)
    delta_w = np.outer((z_target - z) / h_norm, np.sign(h_in))
    if settings.alpha is not None and np.abs(delta_w).max() > settings.alpha * (1 + 1e-9):
        return None  # a neuron switched on needs more than α
    z_new = (np.hstack([chain.weights[m], chain.biases[m][:, None]]) + delta_w) @ h_in
    return Patch(u, z_new, delta_w, A, a, goals)


def _smallest_change(A: np.ndarray, b: np.ndarray, low: np.ndarray, high: np.ndarray, kind: str) -> np.ndarray | None:
    """d with A d ≥ b and low ≤ d ≤ high, minimising Σ|d_i| (``total``) or max|d_i| then Σ|d_i| (``max``)."""
    n = A.shape[1]
    eye, zero = np.eye(n), np.zeros((n, 1))
    # variables [d (n), p (n) ≥ |d|, t ≥ max p]; every row as "≤"
    rows = np.vstack([np.hstack([-A, np.zeros((len(A), n + 1))]), np.hstack([eye, -eye, zero]),
                      np.hstack([-eye, -eye, zero]), np.hstack([np.zeros((n, n)), eye, -np.ones((n, 1))])])
    rhs = np.concatenate([-b, np.zeros(3 * n)])
    bounds = [(lo if np.isfinite(lo) else None, hi if np.isfinite(hi) else None) for lo, hi in zip(low, high)]
    bounds += [(0, None)] * (n + 1)
    if kind == "max":
        res = linprog(np.append(np.zeros(2 * n), 1.0), A_ub=rows, b_ub=rhs, bounds=bounds, method="highs")
        if res.status != 0:
            return None
        bounds[-1] = (0, res.x[-1] * (1 + 1e-6) + 1e-12)
    res = linprog(np.concatenate([np.zeros(n), np.ones(n), [0.0]]), A_ub=rows, b_ub=rhs, bounds=bounds,
                  method="highs")
    return res.x[:n] if res.status == 0 else None


def relaxed_property(chain: DenseChain, patch: Patch, m: int, kind: str = "region") -> Property:
    """The property of the network cut at m (rows on z_m), from "layer m takes the values u"."""
    A, u, slope = patch.rows, patch.u, chain.slopes[m]
    n = len(u)
    if kind == "region":
        on = u > (PHASE if slope == 0 else 0.0)
        g = np.where(on, 1.0, slope)  # h_m = g·z_m on the patch's pattern
        # act(z) ≥ g·z always, so only a neuron with a negative coefficient must keep its new phase
        held = (A < -TOL).any(axis=0)
        phase = np.where(on, 1.0, -1.0)[held, None] * np.eye(n)[held]
        return Property(m, np.vstack([A * g, phase]), np.concatenate([patch.rhs, np.where(on, PHASE, 0.0)[held]]))
    s = np.sign(A[:patch.goals].sum(axis=0))  # the paper: increment h ≥ u, decrement h ≤ u, unmarked h = u
    lower, upper = s >= 0, s <= 0
    if slope == 0:
        lower &= u > 0  # h ≥ 0 always holds
    target, eye = _inverse(u, slope), np.eye(n)
    return Property(m, np.vstack([eye[lower], -eye[upper]]), np.concatenate([target[lower], -target[upper]]))


def input_change(A: np.ndarray, z0: np.ndarray, prop: Property, low: np.ndarray, high: np.ndarray,
                 objective: str = "pixels", max_pixels: int | None = None,
                 time_limit: float = 10.0) -> np.ndarray | None:
    """mod2adv: δ with prop.G (z0 + A δ) ≥ prop.g0 and low ≤ δ ≤ high (low ≤ 0 ≤ high), minimising the
    number of changed elements (MILP) or ‖δ‖₁ (LP); None when infeasible (or no solution in time)."""
    C = prop.G @ A
    b = prop.g0 - prop.G @ z0
    n = A.shape[1]
    if objective == "l1":  # variables [δ, u], u ≥ |δ|
        eye = np.eye(n)
        rows = np.vstack([np.hstack([-C, np.zeros_like(C)]), np.hstack([eye, -eye]), np.hstack([-eye, -eye])])
        rhs = np.concatenate([-b, np.zeros(2 * n)])
        cost = np.concatenate([np.zeros(n), np.ones(n)])
        res = linprog(cost, A_ub=rows, b_ub=rhs, bounds=list(zip(low, high)) + [(0, None)] * n, method="highs")
        return res.x[:n] if res.status == 0 else None
    # variables [δ, on]: low·on ≤ δ ≤ high·on, on ∈ {0, 1}; minimise Σ on
    eye = np.eye(n)
    constraints = [LinearConstraint(np.hstack([C, np.zeros_like(C)]), lb=b),
                   LinearConstraint(np.hstack([eye, -np.diag(high)]), ub=0),
                   LinearConstraint(np.hstack([eye, -np.diag(low)]), lb=0)]
    if max_pixels is not None:
        constraints.append(LinearConstraint(np.concatenate([np.zeros(n), np.ones(n)])[None], ub=max_pixels))
    with silenced_fds():  # HiGHS's MIP solver prints some notes straight to stdout
        res = milp(np.concatenate([np.zeros(n), np.ones(n)]), constraints=constraints,
                   integrality=np.concatenate([np.zeros(n), np.ones(n)]),
                   bounds=Bounds(np.concatenate([low, np.zeros(n)]), np.concatenate([high, np.ones(n)])),
                   options={"time_limit": time_limit, "disp": False})
    return res.x[:n] if res.x is not None else None


@dataclass
class Attempt:
    """What one (seed, class) attempt produced: δ or the stage where it stopped."""

    delta: np.ndarray | None
    stage: str
    largest_weight_change: float | None = None


def edge_layers(count: int) -> list[int]:
    """The edge-layers Algorithm 1 patches, in order: p = ⌈l/2⌉ of l = count + 1 layers (0-based
    count // 2), then m // 2 down to 0."""
    order = [count // 2]
    while order[-1] > 0:
        order.append(order[-1] // 2)
    return order


def attack(chain: DenseChain, seed: Seed, jacobian: np.ndarray, cls: int, label: int, low: np.ndarray,
           high: np.ndarray, objective: str = "pixels", max_pixels: int | None = None, time_limit: float = 10.0,
           settings: Settings = Settings()) -> Attempt:
    """Patch edge-layers down to the first, then solve for the input change that makes ``cls`` beat ``label``
    (or every class, ``settings.goal`` "wins")."""
    prop = goal(len(chain.biases[-1]), cls, label, len(chain.weights) - 1, settings.goal)
    first_change = None
    for m in edge_layers(len(chain.weights)):
        if m == prop.layer:  # the logits' own edge-layer: the property already is on its values
            continue
        patched = patch_layer(chain, seed, prop, m, settings)
        if patched is None:
            return Attempt(None, f"patch of edge-layer {m} ({chain.nodes[m]}) infeasible")
        first_change = float(np.abs(patched.delta_w).max()) if first_change is None else first_change
        prop = relaxed_property(chain, patched, m, settings.relaxation)
    delta = input_change(chain.weights[0] @ jacobian, seed.zs[0], prop, low, high, objective, max_pixels, time_limit)
    if delta is None:
        return Attempt(None, "input change (mod2adv) infeasible", first_change)
    return Attempt(delta, "solved", first_change)
