"""AIGENT's linear programs (Khan et al., "Efficient Adversarial Input Generation via Neural Net
Patching"), for one seed of a :class:`~onnxfault.synthesis.chain.DenseChain`. Pure math, solved with
SciPy's HiGHS (``linprog``/``milp``).

Neuron phases (active z > 0, inactive z ≤ 0) are taken from the seed, so between two layers the network
is affine: z_E = M z_m + c. Active neurons are held active by the LPs; inactive ones are held inactive
only with ``hold_inactive`` (the paper's fully fixed phases). By default the LPs treat them as staying
at their inactive slope without forbidding them to turn on; the ONNX re-check decides. Measured with
``--distance none --objective l1``, 2–3 seeds per class: defect detection 45 % vs 10 % (DeepFault
3_50_relu) and 96.7 % vs 90 % (shipped mnist_dense), with no input failing the re-check. A *property* on layer E is a set of rows G z_E ≥ g0; at the start it is
"class j beats every other class by ``MARGIN``" on the logits.

1. ``patch_layer``: patch the edge-layer m (weights into layer m) so that the property holds and every
   phase between m and E is kept. The marking fixes each neuron's direction: s_i = sign of the sum of
   the property rows' coefficients on z_m,i (increment > 0, decrement < 0, unmarked = 0), and every
   weight change into neuron i has sign s_i·sign(h_j). Minimising the largest weight change |ΔW_ij|
   for a change Δz_i = Σ_j ΔW_ij h_j gives ΔW_ij = Δz_i·sign(h_j)/‖h‖₁ (equal magnitudes are optimal),
   so the LP is over Δz with |Δz_i| ≤ t‖h‖₁, minimising t. When the summed rows' marking makes the LP
   infeasible (a many-row property can pull a neuron both ways), the signs are left free and the marking
   is read off the solution (on DeepFault's 3_50_relu, 20 seeds, no bound: 45 % detection with this
   fallback, 10 % without).
2. ``relaxed_property``: simulate the patched layer (z'_m) and relax the equalities z_m = z'_m of the
   neurons the patch moved into the marking's inequalities s_i z_m,i ≥ s_i z'_m,i. With the old goals
   pulled back to z_m (G M z_m ≥ g0 − G c) and the phases between m and E, this is the property of the
   network cut at m. (The pulled-back goals keep it sound within the region: on the shipped dense MNIST
   model, 30 seeds, no L∞ bound, detection is 90 % with them, 77 % when every marked neuron is held to
   its patched value and the goals are dropped.)
3. Repeat on the cut network (m halves each time) until the first edge-layer is patched; then
   ``input_change`` (mod2adv) solves for δ with z_0 = z_00 + A δ (A = W_0 J, J the prefix's Jacobian)
   meeting the last property, |δ_i| ≤ d and x + δ in the valid range, minimising changed input elements
   (MILP with one binary per element) or ‖δ‖₁ (LP).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, linprog, milp

from ..quiet import silenced_fds
from .chain import DenseChain

MARGIN = 1e-2  # the wanted class beats every other logit by this much
PHASE = 1e-6  # active pre-activations stay at least this far above 0


@dataclass
class Property:
    """Rows ``G v ≥ g0`` on the pre-activations v of layer ``layer``; the first ``goals`` rows state what
    is wanted (they set the marking), the rest keep phases."""

    layer: int
    G: np.ndarray
    g0: np.ndarray
    goals: int


@dataclass
class Seed:
    """One seed's fixed linear region: pre-activations, layer inputs and gates (slope per neuron)."""

    zs: list[np.ndarray]
    hs: list[np.ndarray]
    gates: list[np.ndarray]
    hold_inactive: bool = False  # also keep inactive neurons inactive (the paper's fully fixed phases)


def region(chain: DenseChain, prefix_value: np.ndarray, hold_inactive: bool = False) -> Seed:
    zs, hs = chain.forward(prefix_value)
    gates = [np.where(z > 0, 1.0, slope) for z, slope in zip(zs, chain.slopes)]
    return Seed(zs, hs, gates, hold_inactive)


def wins(num_classes: int, cls: int, layer: int) -> Property:
    """Logit ``cls`` (of the logits layer ``layer``) beats every other class by MARGIN."""
    others = [i for i in range(num_classes) if i != cls]
    G = np.zeros((len(others), num_classes))
    G[np.arange(len(others)), cls] = 1.0
    G[np.arange(len(others)), others] = -1.0
    return Property(layer, G, np.full(len(others), MARGIN), len(others))


def affine_maps(chain: DenseChain, seed: Seed, m: int, e: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(M_l, c_l) with z_l = M_l z_m + c_l in the seed's region, for l = m … e."""
    n = len(seed.zs[m])
    maps = [(np.eye(n), np.zeros(n))]
    for l in range(m + 1, e + 1):
        M, c = maps[-1]
        g = seed.gates[l - 1]
        w = chain.weights[l]
        maps.append((w @ (g[:, None] * M), w @ (g * c) + chain.biases[l]))
    return maps


def _phase_rows(seed: Seed, maps, m: int, e: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows R z_m ≥ r keeping the phases of layers m … e−1."""
    rows, rhs = [], []
    for l in range(m, e):
        M, c = maps[l - m]
        sign = np.where(seed.zs[l] > 0, 1.0, -1.0)
        keep = np.ones(len(sign), bool) if seed.hold_inactive else sign > 0
        rows.append((sign[:, None] * M)[keep])
        rhs.append(np.where(sign > 0, PHASE - c, c)[keep])
    if not rows:
        return np.zeros((0, len(seed.zs[m]))), np.zeros(0)
    return np.vstack(rows), np.concatenate(rhs)


def marking(G: np.ndarray) -> np.ndarray:
    """+1 increment / −1 decrement / 0 unmarked per variable, from the summed property rows."""
    return np.sign(G.sum(axis=0))


def patch_layer(chain: DenseChain, seed: Seed, prop: Property, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The patched layer's new pre-activations z'_m, its marking and the weight patch ΔW_m, or None when
    the LP is infeasible."""
    e = prop.layer
    maps = affine_maps(chain, seed, m, e)
    M, c = maps[-1]
    z0 = seed.zs[m]
    A = prop.G @ M  # property rows on z_m
    s = marking(A[:prop.goals])
    R, r = _phase_rows(seed, maps, m, e)
    h_norm = float(np.abs(seed.hs[m]).sum())
    n = len(z0)
    if h_norm == 0:
        return None
    # variables [Δz (n), t]; every row written as "≤"
    def scaled(signs: np.ndarray) -> np.ndarray:  # signs_i·Δz_i ≤ t‖h‖₁
        return np.hstack([np.diag(signs), -h_norm * np.ones((n, 1))])

    def sign_bounds(signs: np.ndarray) -> list:  # Δz_i ≥ 0, ≤ 0 or = 0 by sign; t ≥ 0
        return [(0, None) if v > 0 else (None, 0) if v < 0 else (0, 0) for v in signs] + [(0, None)]

    held = np.vstack([np.hstack([-A, np.zeros((len(A), 1))]), np.hstack([-R, np.zeros((len(R), 1))])])
    held_rhs = np.concatenate([-(prop.g0 - A @ z0 - prop.G @ c), -(r - R @ z0)])
    rows, rhs, bounds = np.vstack([held, scaled(s)]), np.concatenate([held_rhs, np.zeros(n)]), sign_bounds(s)
    cost = np.zeros(n + 1)
    cost[-1] = 1.0
    res = linprog(cost, A_ub=rows, b_ub=rhs, bounds=bounds, method="highs")
    if res.status != 0:
        # the summed rows' marking can contradict a many-row property; then each neuron's sign is free
        # (|Δz_i| ≤ t‖h‖₁ both ways) and the marking is read off the solution
        res = linprog(cost, A_ub=np.vstack([held, scaled(np.ones(n)), scaled(-np.ones(n))]),
                      b_ub=np.concatenate([held_rhs, np.zeros(2 * n)]),
                      bounds=[(None, None)] * n + [(0, None)], method="highs")
        if res.status == 0:
            s = np.sign(np.where(np.abs(res.x[:n]) > 1e-12, res.x[:n], 0.0))
            rows, bounds = np.vstack([held, scaled(s)]), sign_bounds(s)
    if res.status != 0:
        return None
    # among the smallest patches, the one that moves the layer least (Σ|Δz|): fewer demands on the cut net
    bounds[-1] = (0, res.x[-1] * (1 + 1e-6) + 1e-12)
    least = linprog(np.append(s, 0.0), A_ub=rows, b_ub=rhs, bounds=bounds, method="highs")
    dz = (least if least.status == 0 else res).x[:n]
    delta_w = np.outer(dz / h_norm, np.sign(seed.hs[m]))  # the patch itself
    z_new = (chain.weights[m] + delta_w) @ seed.hs[m] + chain.biases[m]  # simulate the patched layer
    return z_new, s, delta_w


def relaxed_property(chain: DenseChain, seed: Seed, prop: Property, m: int, z_new: np.ndarray,
                     s: np.ndarray) -> Property:
    """The property of the network cut at m: the marking's inequalities around z'_m plus the phases
    between m and the old property's layer."""
    maps = affine_maps(chain, seed, m, prop.layer)
    marked = np.flatnonzero((np.abs(z_new - seed.zs[m]) > 1e-9) & (s != 0))  # the neurons the patch moved
    G = np.zeros((len(marked), len(z_new)))
    G[np.arange(len(marked)), marked] = s[marked]
    M, c = maps[-1]
    G = np.vstack([G, prop.G[:prop.goals] @ M])  # the old goals, pulled back to z_m: sound in the region
    g0 = np.concatenate([s[marked] * z_new[marked], prop.g0[:prop.goals] - prop.G[:prop.goals] @ c])
    R, r = _phase_rows(seed, maps, m, prop.layer)
    return Property(m, np.vstack([G, R]), np.concatenate([g0, r]), len(g0))


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


def attack(chain: DenseChain, seed: Seed, jacobian: np.ndarray, cls: int, low: np.ndarray, high: np.ndarray,
           objective: str, max_pixels: int | None, time_limit: float) -> Attempt:
    """Patch middle edge-layers down to the first, then solve for the input change that makes ``cls`` win."""
    prop = wins(len(chain.biases[-1]), cls, len(chain.weights) - 1)
    first_change = None
    while True:
        m = prop.layer // 2
        patched = patch_layer(chain, seed, prop, m)
        if patched is None:
            return Attempt(None, f"patch of edge-layer {m} ({chain.nodes[m]}) infeasible")
        z_new, s, delta_w = patched
        first_change = float(np.abs(delta_w).max()) if first_change is None else first_change
        prop = relaxed_property(chain, seed, prop, m, z_new, s)
        if m == 0:
            break
    delta = input_change(chain.weights[0] @ jacobian, seed.zs[0], prop, low, high, objective, max_pixels, time_limit)
    if delta is None:
        return Attempt(None, "input change (mod2adv) infeasible", first_change)
    return Attempt(delta, "solved", first_change)
