"""Suspiciousness formulas pinned against hand-computed values, including every 0-denominator case."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, strategies as st

from onnxfault.errors import OnnxFaultError
from onnxfault.measures import MEASURES, get_measure, rank, score

# as=3 af=2 ns=5 nf=1  →  F = 3, P = 8, N = 11
COUNTS = np.array([[3], [2], [5], [1]])
HAND = {
    "tarantula": (2 / 3) / (2 / 3 + 3 / 8),
    "ochiai": 2 / np.sqrt(3 * 5),  # af (not as) in the numerator
    "dstar": 2 ** 3 / (3 + 1),
    "ochiai2": 2 * 5 / np.sqrt(5 * 6 * 3 * 8),
    "jaccard": 2 / 6,
    "kulczynski2": 0.5 * (2 / 3 + 2 / 5),
    "op2": 2 - 3 / 9,
    "barinel": 1 - 3 / 5,
    "zoltar": 2 / (2 + 1 + 3 + 10000 * 1 * 3 / 2),
    "russellrao": 2 / 11,
    "sorensendice": 4 / 8,
    "wong2": 2 - 3,
}


def test_every_registered_measure_is_pinned():
    assert set(HAND) | {"random", "shapley"} == set(MEASURES)
    assert [m.name for m in MEASURES.values() if m.needs_model] == ["shapley"]


@pytest.mark.parametrize("name", sorted(HAND))
def test_hand_values(name):
    assert score(name, COUNTS)[0] == pytest.approx(HAND[name], rel=1e-12)


def test_dstar_star_parameter():
    assert score("dstar", COUNTS, star=2)[0] == pytest.approx(4 / 4)


# (as, af, ns, nf) edge cases and the defined scores
EDGES = {
    "no failing samples": ((2, 0, 3, 0), {"tarantula": 0, "ochiai": 0, "dstar": 0, "ochiai2": 0, "jaccard": 0,
                                          "kulczynski2": 0, "op2": -2 / 6, "barinel": 0, "zoltar": 0,
                                          "russellrao": 0, "sorensendice": 0, "wong2": -2}),
    "never active": ((0, 0, 4, 2), {"tarantula": 0, "ochiai": 0, "dstar": 0, "ochiai2": 0, "jaccard": 0,
                                    "kulczynski2": 0, "op2": 0, "barinel": 0, "zoltar": 0, "russellrao": 0,
                                    "sorensendice": 0, "wong2": 0}),
    "active on exactly the failing": ((0, 3, 4, 0), {"tarantula": 1, "ochiai": 1, "dstar": 3 ** 3 + 1,
                                                     "ochiai2": 1, "jaccard": 1, "kulczynski2": 1, "op2": 3,
                                                     "barinel": 1, "zoltar": 1, "russellrao": 3 / 7,
                                                     "sorensendice": 1, "wong2": 3}),
    "no passing samples": ((0, 2, 0, 1), {"tarantula": 1, "ochiai": 2 / np.sqrt(6), "dstar": 8,
                                          "ochiai2": 0, "jaccard": 2 / 3, "kulczynski2": 0.5 * (2 / 3 + 1),
                                          "op2": 2, "barinel": 1, "zoltar": 2 / 3, "russellrao": 2 / 3,
                                          "sorensendice": 4 / 5, "wong2": 2}),
}


@pytest.mark.parametrize("case", sorted(EDGES))
def test_zero_denominators_are_defined(case):
    counts, expected = EDGES[case]
    column = np.array(counts).reshape(4, 1)
    for name, value in expected.items():
        assert score(name, column)[0] == pytest.approx(value), name


counts_strategy = st.lists(st.tuples(*[st.integers(0, 50)] * 4), min_size=1, max_size=30)


@given(counts_strategy)
def test_scores_always_finite_and_dstar_top_stays_on_top(rows):
    counts = np.array(rows).T
    for name in (m.name for m in MEASURES.values() if not m.needs_model):
        assert np.isfinite(score(name, counts)).all(), name
    # within one spectrum every neuron sees the same F; make it consistent and check the top rule
    F = counts[1] + counts[3]
    consistent = np.stack([counts[0], counts[1], counts[2], F.max() - counts[1]])
    s = score("dstar", consistent)
    top = (consistent[0] + consistent[3] == 0) & (consistent[1] > 0)
    if top.any() and (~top).any():
        assert s[top].min() > s[~top].max()


def test_random_is_seeded():
    counts = np.zeros((4, 100), np.int64)
    assert np.array_equal(score("random", counts, seed=1), score("random", counts, seed=1))
    assert not np.array_equal(score("random", counts, seed=1), score("random", counts, seed=2))


def test_aliases_and_unknown_names():
    assert get_measure("D*").name == "dstar" and get_measure("Ochiai").name == "ochiai"
    with pytest.raises(OnnxFaultError, match="did you mean ochiai"):
        get_measure("ochai")


def test_rank_breaks_ties_by_deeper_layer_then_index():
    # DeepFault, section 3.2: equal scores go to the deeper layer first; within a layer, the lower index
    scores = np.array([0.5, 0.9, 0.5, 0.5, 0.9])
    layer = np.array([1, 1, 0, 0, 0])
    index = np.array([0, 1, 1, 0, 2])
    assert rank(scores, layer, index).tolist() == [1, 4, 0, 3, 2]
