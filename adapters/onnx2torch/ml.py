"""Classical ML ops of the ``ai.onnx.ml`` domain: Binarizer, ArrayFeatureExtractor and TreeEnsemble (opset 5).

TreeEnsemble and Binarizer are piecewise constant in their input, so their outputs carry no gradient.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .registry import Node, OpFn, converter

ML = "ai.onnx.ml"


@converter("Binarizer", domain=ML)
def _binarizer(node: Node) -> OpFn:
    threshold = float(node.attr("threshold", 0.0))

    def binarizer(x):
        return (x > threshold).to(x.dtype)

    return binarizer


@converter("ArrayFeatureExtractor", domain=ML)
def _array_feature_extractor(node: Node) -> OpFn:
    def array_feature_extractor(x, indices):
        """The flattened indices pick along the last axis; a 1-D input gives one row (as onnxruntime does)."""
        y = x.index_select(-1, indices.reshape(-1).to(device=x.device, dtype=torch.long))
        return y.reshape(1, -1) if x.dim() == 1 else y

    return array_feature_extractor


# ---- TreeEnsemble ------------------------------------------------------------------------------------------
LEQ, LT, GTE, GT, EQ, NEQ, MEMBER = range(7)
AVERAGE, SUM, MIN, MAX = range(4)
NONE, SOFTMAX, LOGISTIC, SOFTMAX_ZERO, PROBIT = range(5)

_TESTS = {LEQ: torch.le, LT: torch.lt, GTE: torch.ge, GT: torch.gt, EQ: torch.eq, NEQ: torch.ne}


class _Forest:
    """Every tree as one node table: the interior nodes 0..M-1, then the leaves M..M+L-1, which point to
    themselves, so that all samples can walk all trees in lockstep for ``depth`` steps."""

    def __init__(self, node: Node):
        a = node.attr
        modes = _array(a("nodes_modes"), np.int64)
        m = len(modes)
        features, splits = _array(a("nodes_featureids"), np.int64), _array(a("nodes_splits"), np.float64)
        true_ids, false_ids = _array(a("nodes_truenodeids"), np.int64), _array(a("nodes_falsenodeids"), np.int64)
        true_leaf, false_leaf = _array(a("nodes_trueleafs"), bool), _array(a("nodes_falseleafs"), bool)
        missing = a("nodes_missing_value_tracks_true")
        missing = np.zeros(m, bool) if missing is None else _array(missing, bool)
        weights, targets = _array(a("leaf_weights"), np.float64), _array(a("leaf_targetids"), np.int64)
        roots = _array(a("tree_roots"), np.int64)
        n_leaves = len(weights)
        self.n_targets = int(a("n_targets", int(targets.max(initial=-1)) + 1))
        _check(node, m, n_leaves, self.n_targets, features, splits, true_ids, false_ids, true_leaf, false_leaf,
               missing, modes, targets, roots)
        # children in the node table: leaves are shifted past the interior nodes
        true_next = np.where(true_leaf, true_ids + m, true_ids)
        false_next = np.where(false_leaf, false_ids + m, false_ids)
        self.depth = _depth(node, true_next, false_next, roots, m)
        self.modes, self.any_missing = sorted(set(modes.tolist())), bool(missing.any())
        self.n_nodes, self.max_feature = m, int(features.max())
        members, member_row = _member_sets(node, a("membership_values"), modes)
        leaves, pad = np.arange(m, m + n_leaves), np.zeros(n_leaves, np.int64)
        tables = {
            "feature": np.concatenate([features, pad]), "split": np.concatenate([splits, np.zeros(n_leaves)]),
            "mode": np.concatenate([modes, pad]), "missing": np.concatenate([missing, np.zeros(n_leaves, bool)]),
            # the next node of node i: children[2i] when its test fails, children[2i + 1] when it passes
            "children": np.stack([np.concatenate([false_next, leaves]), np.concatenate([true_next, leaves])], 1),
            "member_row": np.concatenate([member_row, pad]), "members": members,
            "weight": weights, "target": targets, "roots": roots,
        }
        self.tables = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in tables.items()}
        self._moved: dict[torch.device, dict] = {}

    def on(self, device: torch.device) -> dict:
        """The tables on ``device``, copied there once."""
        if device not in self._moved:
            self._moved[device] = {k: v.to(device) for k, v in self.tables.items()}
        return self._moved[device]

    def leaves(self, x: torch.Tensor) -> torch.Tensor:
        """(samples, trees): the leaf each sample reaches in each tree."""
        t = self.on(x.device)
        # compared in float64, exactly as ONNX compares a float32/float64 feature with a float/double split
        values = x.to(torch.float64)
        at = t["roots"].expand(x.shape[0], -1)
        for _ in range(self.depth):
            v = values.gather(1, _pick(t["feature"], at))
            go_true = self._test(v, at, t)
            if self.any_missing:
                go_true = go_true | (_pick(t["missing"], at) & v.isnan())
            at = _pick(t["children"].view(-1), 2 * at + go_true)
        return at - self.n_nodes

    def _test(self, v: torch.Tensor, at: torch.Tensor, t: dict) -> torch.Tensor:
        """The branch condition of each node at ``at``, for the modes this ensemble uses."""
        split = _pick(t["split"], at) if self.modes != [MEMBER] else None
        hits = {m: _member(v, _pick(t["member_row"], at), t["members"]) if m == MEMBER else _TESTS[m](v, split)
                for m in self.modes}
        if len(hits) == 1:
            return hits.popitem()[1]
        mode = _pick(t["mode"], at)
        go_true = torch.zeros_like(v, dtype=torch.bool)
        for m, hit in hits.items():
            go_true = torch.where(mode == m, hit, go_true)
        return go_true


def _pick(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """table[index] for a table of rows (index_select is much faster than advanced indexing on CPU)."""
    return table.index_select(0, index.reshape(-1)).view(*index.shape, *table.shape[1:])


def _member(v: torch.Tensor, rows: torch.Tensor, members: torch.Tensor) -> torch.Tensor:
    """Whether each value is in its node's set (rows of members padded with NaN, which matches nothing)."""
    return (v.unsqueeze(-1) == _pick(members, rows)).any(-1)


def _array(value, dtype) -> np.ndarray:
    return np.asarray(value if value is not None else [], dtype=dtype).reshape(-1)


def _check(node: Node, m, n_leaves, n_targets, features, splits, true_ids, false_ids, true_leaf, false_leaf,
           missing, modes, targets, roots) -> None:
    """The ensemble is well formed: the tables agree in length and every index is in range."""
    if m == 0 or n_leaves == 0 or len(roots) == 0:
        raise node.unsupported("an ensemble without nodes, leaves or trees")
    if any(len(v) != m for v in (features, splits, true_ids, false_ids, true_leaf, false_leaf, missing)):
        raise node.unsupported("nodes_* attributes of different lengths")
    if len(targets) != n_leaves:
        raise node.unsupported("leaf_weights and leaf_targetids of different lengths")
    if modes.min() < 0 or modes.max() > MEMBER:
        raise node.unsupported(f"nodes_modes {sorted(set(modes.tolist()) - set(range(7)))}")
    for ids, leaf in ((true_ids, true_leaf), (false_ids, false_leaf)):
        if np.any((ids < 0) | (ids >= np.where(leaf, n_leaves, m))):
            raise node.unsupported("a child index out of range")
    if features.min() < 0 or roots.min() < 0 or roots.max() >= m:
        raise node.unsupported("a negative feature id or a tree root out of range")
    if targets.min() < 0 or targets.max() >= n_targets:
        raise node.unsupported(f"leaf_targetids out of range [0, n_targets={n_targets})")
    aggregate, post = node.attr("aggregate_function", SUM), node.attr("post_transform", NONE)
    if aggregate not in (AVERAGE, SUM, MIN, MAX) or post not in (NONE, SOFTMAX, LOGISTIC, SOFTMAX_ZERO, PROBIT):
        raise node.unsupported(f"aggregate_function {aggregate} / post_transform {post}")


def _depth(node: Node, true_next, false_next, roots, m: int) -> int:
    """The number of branchings on the longest root-to-leaf path, level by level."""
    level, depth = np.unique(roots), 0
    while len(level):
        depth += 1
        if depth > m:
            raise node.unsupported("trees with a cycle")
        children = np.concatenate([true_next[level], false_next[level]])
        level = np.unique(children[children < m])
    return depth


def _member_sets(node: Node, values, modes) -> tuple[np.ndarray, np.ndarray]:
    """The NaN-delimited membership_values as rows padded with NaN, and each node's row (0 for the others)."""
    is_member = modes == MEMBER
    values = _array(values, np.float64)
    if len(values) and not np.isnan(values[-1]):
        values = np.append(values, np.nan)  # the last set may go without its closing NaN
    delimiter = np.isnan(values)
    n_sets = int(delimiter.sum())
    if n_sets != int(is_member.sum()):
        raise node.unsupported(f"{n_sets} membership sets for {int(is_member.sum())} BRANCH_MEMBER nodes")
    row = np.cumsum(delimiter) - delimiter  # the set each value belongs to
    first = np.searchsorted(row, row)  # where its set starts
    row, column, values = row[~delimiter], (np.arange(len(values)) - first)[~delimiter], values[~delimiter]
    members = np.full((max(n_sets, 1), int(column.max(initial=0)) + 1), np.nan)
    members[row, column] = values
    member_row = np.zeros(len(modes), np.int64)
    member_row[is_member] = np.arange(n_sets)
    return members, member_row


def _aggregate(weights: torch.Tensor, targets: torch.Tensor, n_targets: int, how: int,
               dtype: torch.dtype) -> torch.Tensor:
    """Each sample's leaf values gathered per target; AVERAGE divides by the number of trees, MIN and MAX
    start from the largest / smallest value of the output type (what a target no leaf reaches keeps)."""
    shape = (weights.shape[0], n_targets)
    if how in (SUM, AVERAGE):
        out = weights.new_zeros(shape).scatter_add(1, targets, weights)
        return out / weights.shape[1] if how == AVERAGE else out
    info = torch.finfo(dtype)
    start = weights.new_full(shape, info.max if how == MIN else info.min)
    return start.scatter_reduce(1, targets, weights, "amin" if how == MIN else "amax")


def _softmax_zero(scores: torch.Tensor) -> torch.Tensor:
    """Softmax where (near-)zero scores weigh (almost) nothing; all-zero rows become 0.5."""
    top = scores.max(dim=1, keepdim=True).values
    e = torch.where(scores.abs() > 1e-7, torch.exp(scores - top), scores * torch.exp(-top))
    total = e.sum(dim=1, keepdim=True)
    return torch.where(total == 0, torch.full_like(e, 0.5), e / total)


def _probit(p: torch.Tensor) -> torch.Tensor:
    """sqrt(2)·erfinv(2p - 1) with Winitzki's approximation of erfinv (a = 0.147), as onnxruntime and onnx's
    reference compute it (within 2e-3 of the exact value in the far tails)."""
    x = 2 * p - 1
    log = torch.log((1 - x) * (1 + x))
    v = 2 / (math.pi * 0.147) + 0.5 * log
    return 1.41421356 * torch.sign(x) * torch.sqrt(torch.sqrt(v * v - log / 0.147) - v)


_POST = {
    NONE: lambda s: s,
    SOFTMAX: lambda s: torch.softmax(s, dim=1),
    LOGISTIC: torch.sigmoid,
    SOFTMAX_ZERO: _softmax_zero,
    PROBIT: _probit,
}


@converter("TreeEnsemble", domain=ML)
def _tree_ensemble(node: Node) -> OpFn:
    forest = _Forest(node)
    how, post = node.attr("aggregate_function", SUM), _POST[node.attr("post_transform", NONE)]

    def tree_ensemble(x):
        rows = x.reshape(1, -1) if x.dim() == 1 else x.reshape(x.shape[0], -1)
        if forest.max_feature >= rows.shape[1]:
            raise node.unsupported(f"feature id {forest.max_feature} for {rows.shape[1]} features")
        t = forest.on(x.device)
        leaf = forest.leaves(rows)
        scores = _aggregate(_pick(t["weight"], leaf), _pick(t["target"], leaf), forest.n_targets, how, x.dtype)
        return post(scores).to(x.dtype)

    return tree_ensemble
