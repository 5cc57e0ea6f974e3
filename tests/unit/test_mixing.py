"""Sample-aware Metropolis-Hastings mixing converges to the sample-weighted (FedAvg) mean."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swarm.errors import AveragingError
from swarm.mixing import sample_weighted_matrix, sample_weighted_row
from swarm.topology import build_topology

graphs = st.sampled_from(["ring", "full", "exponential", "kregular", "smallworld"])


@settings(max_examples=40, deadline=None, derandomize=True)
@given(graphs, st.integers(6, 16), st.integers(0, 1000))
def test_matrix_preserves_the_sample_weighted_mean_and_converges_to_it(name, n, seed):
    if name == "kregular" and n % 2:
        n += 1
    graph = build_topology(name, n, seed=seed, degree=3)
    rng = np.random.default_rng(seed)
    samples = rng.integers(1, 500, n).astype(float)
    x = rng.normal(size=(n, 5))
    P = sample_weighted_matrix(graph, samples)
    assert np.allclose(P.sum(axis=1), 1.0)
    assert (P >= 0).all()
    pi = samples / samples.sum()
    target = pi @ x
    y = x.copy()
    for _ in range(5):
        y = P @ y
        assert np.allclose(pi @ y, target)
    for _ in range(3000):
        y = P @ y
    assert np.allclose(y, target[None, :], atol=1e-6)


def test_row_matches_the_matrix():
    graph = build_topology("smallworld", 10, seed=2, degree=4)
    samples = [float(s) for s in np.random.default_rng(0).integers(5, 90, 10)]
    P = sample_weighted_matrix(graph, samples)
    for i, nb in graph.items():
        self_w, w = sample_weighted_row(
            len(nb), samples[i], {str(j): len(graph[j]) for j in nb}, {str(j): samples[j] for j in nb}
        )
        assert self_w == pytest.approx(P[i, i])
        for j in nb:
            assert w[str(j)] == pytest.approx(P[i, j])


def test_a_neighbour_claiming_huge_samples_gets_no_more_than_its_plain_weight():
    _, honest = sample_weighted_row(2, 100, {"a": 2, "b": 2}, {"a": 100, "b": 100})
    _, liar = sample_weighted_row(2, 100, {"a": 2, "b": 2}, {"a": 100, "b": 10**12})
    assert liar["b"] == pytest.approx(honest["b"]) == pytest.approx(1 / 3)


def test_a_smaller_neighbour_gets_proportionally_less():
    self_w, w = sample_weighted_row(2, 100, {"a": 2, "b": 2}, {"a": 50, "b": 100})
    assert w["a"] == pytest.approx(w["b"] / 2)
    assert self_w + sum(w.values()) == pytest.approx(1.0)


@pytest.mark.parametrize("bad", [0, -3, float("nan"), float("inf")])
def test_bad_sample_counts_name_the_peer(bad):
    with pytest.raises(AveragingError) as info:
        sample_weighted_row(2, 100, {"a": 2}, {"a": bad})
    assert info.value.peer == "a"
