import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swarm.metrics import accuracy, auroc, binary_auroc, finite_or_none


def brute_force_auroc(pos, scores):
    """Probability that a random positive outranks a random negative (ties count half)."""
    p = scores[pos]
    n = scores[~pos]
    wins = (p[:, None] > n[None, :]).sum() + 0.5 * (p[:, None] == n[None, :]).sum()
    return wins / (len(p) * len(n))


def test_perfect_and_inverted_ranking():
    labels = np.array([0, 0, 1, 1])
    assert binary_auroc(labels == 1, np.array([0.1, 0.2, 0.8, 0.9])) == 1.0
    assert binary_auroc(labels == 1, np.array([0.9, 0.8, 0.2, 0.1])) == 0.0


def test_all_ties_is_one_half():
    assert binary_auroc(np.array([True, False, True]), np.zeros(3)) == 0.5


def test_single_class_is_nan():
    assert math.isnan(binary_auroc(np.array([True, True]), np.array([0.1, 0.2])))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 5)), min_size=2, max_size=40))
def test_matches_pairwise_definition(pairs):
    pos = np.array([p for p, _ in pairs])
    scores = np.array([s for _, s in pairs], dtype=float)
    if pos.all() or not pos.any():
        assert math.isnan(binary_auroc(pos, scores))
    else:
        assert binary_auroc(pos, scores) == pytest.approx(brute_force_auroc(pos, scores))


def test_multiclass_is_macro_one_vs_rest_over_present_classes():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 50)
    probs = rng.dirichlet(np.ones(4), 50)  # class 3 never occurs in labels
    expected = np.mean([binary_auroc(labels == k, probs[:, k]) for k in range(3)])
    assert auroc(labels, probs) == pytest.approx(expected)


def test_accuracy_counts_argmax_hits():
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    assert accuracy(np.array([0, 1, 1]), probs) == pytest.approx(2 / 3)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, np.float32("nan"), None])
def test_finite_or_none_turns_missing_and_non_finite_figures_into_none(value):
    assert finite_or_none(value) is None


@pytest.mark.parametrize("value", [0.0, -2.5, 1e300, np.float32(0.25), np.float64(0.75), 3])
def test_finite_or_none_keeps_finite_figures_as_plain_floats(value):
    out = finite_or_none(value)
    assert type(out) is float and out == float(value)
