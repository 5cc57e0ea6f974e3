"""The one-peer exponential graph: partners, links and exact averaging (pure math)."""

from __future__ import annotations

import numpy as np
import pytest

from swarm.errors import TopologyError
from swarm.mixing import sample_weighted_matrix
from swarm.schedule import OnePeerSchedule, onepeer_matrix, onepeer_neighbours, onepeer_partner
from swarm.topology import build_topology, is_connected, parse_topology


@pytest.mark.parametrize("n", [2, 4, 8, 16, 32])
def test_log2_n_steps_average_exactly_for_a_power_of_two(n):
    rng = np.random.default_rng(n)
    x = rng.normal(size=(n, 5))
    for t in range(n.bit_length() - 1):
        x = onepeer_matrix(n, t) @ x
    np.testing.assert_allclose(x, np.tile(x.mean(axis=0), (n, 1)), atol=1e-12)


def test_fewer_steps_do_not_average_exactly():
    x = np.arange(8.0)[:, None]
    for t in range(2):
        x = onepeer_matrix(8, t) @ x
    assert np.ptp(x) > 1.0


@pytest.mark.parametrize("n", [3, 6, 8, 12])
def test_every_step_is_symmetric_and_doubly_stochastic(n):
    for t in range(6):
        matrix = onepeer_matrix(n, t)
        np.testing.assert_allclose(matrix, matrix.T)
        np.testing.assert_allclose(matrix.sum(axis=0), 1.0)
        np.testing.assert_allclose(matrix.sum(axis=1), 1.0)


def test_partner_is_at_distance_two_to_the_k_and_cycles():
    assert [onepeer_partner(0, 8, t) for t in range(4)] == [1, 2, 4, 1]
    assert [onepeer_partner(5, 8, t) for t in range(3)] == [4, 7, 1]
    assert onepeer_partner(5, 6, 2) == 1
    assert onepeer_partner(2, 6, 2) is None  # 2 XOR 4 = 6 is not a peer: sits the step out


def test_sample_aware_weights_on_a_pair_keep_the_weighted_mean():
    matrix = sample_weighted_matrix({0: [1], 1: [0]}, [30.0, 10.0])
    x = np.array([1.0, 5.0])
    counts = np.array([30.0, 10.0])
    assert counts @ (matrix @ x) == pytest.approx(counts @ x)


@pytest.mark.parametrize("n", [1, 5, 8, 13])
def test_links_are_every_partner_and_connected(n):
    graph = build_topology(*parse_topology("onepeer-exp")[:1], n)
    assert graph == onepeer_neighbours(n)
    assert is_connected(graph)
    for i, adjacent in graph.items():
        assert all(i in graph[j] for j in adjacent)
    if n == 8:
        assert all(len(adjacent) == 3 for adjacent in graph.values())


def test_schedule_names_the_partner_of_each_phase_across_rounds():
    ids = tuple(f"p{i}" for i in range(8))
    schedule = OnePeerSchedule(ids, gossip_steps=2)
    assert [schedule.partners("p0", phase) for phase in [(0, 0), (0, 1), (1, 0), (1, 1)]] == [
        {"p1"}, {"p2"}, {"p4"}, {"p1"}]
    assert schedule.partners("stranger", (0, 0)) == frozenset()


def test_schedule_refuses_repeated_ids():
    with pytest.raises(TopologyError):
        OnePeerSchedule(("a", "a"), gossip_steps=1)
