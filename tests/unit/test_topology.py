"""Tests for ``swarm.topology``: seeded graph builders, spec parsing and connectivity."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swarm.errors import TopologyError
from swarm.topology import TOPOLOGIES, build_topology, is_connected, parse_topology

PROPERTY = settings(max_examples=80, deadline=None, derandomize=True, database=None)


@st.composite
def topology_args(draw: st.DrawFn) -> tuple[str, int, dict]:
    """A topology name, a node count and keyword arguments that are valid together."""
    name = draw(st.sampled_from(TOPOLOGIES))
    kwargs: dict = {"seed": draw(st.integers(0, 2**31 - 1))}
    if name == "kregular":
        n = draw(st.integers(3, 40))
        kwargs["degree"] = draw(st.sampled_from([d for d in range(2, n) if n * d % 2 == 0]))
    elif name == "smallworld":
        n = draw(st.integers(3, 40))
        kwargs["degree"] = draw(st.integers(1, n - 1).filter(lambda d: d + d % 2 < n))
        kwargs["rewire"] = draw(st.floats(0.0, 1.0))
    else:
        n = draw(st.integers(1, 40))
    return name, n, kwargs


def _assert_simple_undirected(graph: dict[int, list[int]], n: int) -> None:
    assert list(graph) == list(range(n))
    for node, adjacent in graph.items():
        assert adjacent == sorted(set(adjacent)), "sorted, no duplicates"
        assert node not in adjacent, "no self-loops"
        for other in adjacent:
            assert 0 <= other < n
            assert node in graph[other], "symmetric"


# ------------------------------------------------------------------ invariants


@PROPERTY
@given(topology_args())
def test_every_topology_is_simple_undirected_and_connected(args) -> None:
    name, n, kwargs = args
    graph = build_topology(name, n, **kwargs)
    _assert_simple_undirected(graph, n)
    assert is_connected(graph)


@PROPERTY
@given(topology_args())
def test_same_seed_gives_the_same_graph(args) -> None:
    name, n, kwargs = args
    assert build_topology(name, n, **kwargs) == build_topology(name, n, **kwargs)


@pytest.mark.parametrize(
    "name,kwargs",
    [("kregular", {"degree": 3}), ("kregular", {"degree": 15}), ("smallworld", {"degree": 4})],
)
def test_random_topologies_depend_on_the_seed(name, kwargs) -> None:
    graphs = {str(build_topology(name, 20, seed=seed, **kwargs)) for seed in range(5)}
    assert len(graphs) > 1


@pytest.mark.parametrize("n", [3, 4, 7, 16, 33])
def test_ring_has_degree_two_and_links_consecutive_nodes(n) -> None:
    graph = build_topology("ring", n)
    assert all(len(adjacent) == 2 for adjacent in graph.values())
    assert all((node + 1) % n in graph[node] for node in graph)


@pytest.mark.parametrize("n", [1, 2])
def test_tiny_rings(n) -> None:
    assert build_topology("ring", n) == ({0: []} if n == 1 else {0: [1], 1: [0]})


@pytest.mark.parametrize("n", [1, 2, 5, 12])
def test_full_graph_links_everyone(n) -> None:
    graph = build_topology("full", n)
    assert all(len(adjacent) == n - 1 for adjacent in graph.values())


@PROPERTY
@given(st.integers(3, 60), st.data())
def test_kregular_has_the_requested_degree(n, data) -> None:
    degree = data.draw(st.sampled_from([d for d in range(2, n) if n * d % 2 == 0]))
    seed = data.draw(st.integers(0, 1000))
    graph = build_topology("kregular", n, degree=degree, seed=seed)
    assert all(len(adjacent) == degree for adjacent in graph.values())
    assert is_connected(graph)


@pytest.mark.parametrize("n,degree", [(60, 58), (60, 59), (100, 90), (61, 40)])
def test_dense_kregular_graphs_are_built(n, degree) -> None:
    # networkx's pairing method alone takes minutes here; the builder uses the complement.
    graph = build_topology("kregular", n, degree=degree, seed=1)
    _assert_simple_undirected(graph, n)
    assert all(len(adjacent) == degree for adjacent in graph.values())


def test_kregular_degree_two_is_one_cycle_not_several() -> None:
    # A random 2-regular graph is usually several cycles; connectivity must still hold.
    for seed in range(20):
        assert is_connected(build_topology("kregular", 50, degree=2, seed=seed))


@PROPERTY
@given(st.integers(4, 40), st.data())
def test_smallworld_keeps_the_lattice_edge_count(n, data) -> None:
    degree = data.draw(st.integers(1, n - 1).filter(lambda d: d + d % 2 < n))
    seed = data.draw(st.integers())
    graph = build_topology("smallworld", n, degree=degree, rewire=0.3, seed=seed)
    edges = sum(len(adjacent) for adjacent in graph.values()) // 2
    assert edges == n * (degree + degree % 2) // 2  # rewiring moves edges, never adds or drops


def test_smallworld_without_rewiring_is_the_ring_lattice() -> None:
    graph = build_topology("smallworld", 10, degree=4, rewire=0.0)
    assert graph[0] == [1, 2, 8, 9]


@pytest.mark.parametrize("n", [1, 2, 3, 8, 10, 31])
def test_exponential_links_powers_of_two_hops(n) -> None:
    graph = build_topology("exponential", n)
    hops = [2**k for k in range(math.ceil(math.log2(n)) if n > 1 else 0)]
    for node, adjacent in graph.items():
        expected = {(node + sign * hop) % n for hop in hops for sign in (1, -1)} - {node}
        assert set(adjacent) == expected


def test_exponential_diameter_is_logarithmic() -> None:
    graph = build_topology("exponential", 64)
    assert _eccentricity(graph, 0) <= math.ceil(math.log2(64))


def _eccentricity(graph: dict[int, list[int]], start: int) -> int:
    frontier, seen, depth = {start}, {start}, 0
    while len(seen) < len(graph):
        frontier = {other for node in frontier for other in graph[node]} - seen
        seen |= frontier
        depth += 1
    return depth


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    "name,n,kwargs,message",
    [
        ("mesh", 4, {}, "unknown topology"),
        ("ring", 0, {}, "n must be"),
        ("full", -3, {}, "n must be"),
        ("ring", 2.5, {}, "n must be"),
        ("kregular", 5, {"degree": 3}, "n*degree must be even (n=5, degree=3)"),
        ("kregular", 4, {"degree": 4}, "degree < n"),
        ("kregular", 4, {"degree": 0}, "1 <= degree"),
        ("kregular", 6, {"degree": 1}, "disconnected"),
        ("kregular", 1, {}, "degree < n"),
        ("smallworld", 4, {"degree": 3}, "rounded up to even (4) must be < n"),
        ("smallworld", 10, {"degree": 0}, "degree must be >= 1"),
        ("smallworld", 10, {"rewire": 1.5}, "rewire must be in [0, 1]"),
        ("smallworld", 10, {"rewire": float("nan")}, "rewire must be in [0, 1]"),
        ("smallworld", 10, {"rewire": "0.1"}, "rewire must be a number"),
        ("kregular", 10, {"degree": 3.0}, "degree must be an integer"),
        ("ring", 10, {"seed": "x"}, "seed must be an integer"),
    ],
)
def test_impossible_requests_raise_topology_error(name, n, kwargs, message) -> None:
    with pytest.raises(TopologyError) as info:
        build_topology(name, n, **kwargs)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


# ------------------------------------------------------------------ parsing


@pytest.mark.parametrize(
    "spec,expected",
    [
        ("ring", ("ring", {})),
        ("full", ("full", {})),
        ("exponential", ("exponential", {})),
        ("kregular:4", ("kregular", {"degree": 4})),
        ("smallworld:4", ("smallworld", {"degree": 4})),
        ("smallworld:4:0.1", ("smallworld", {"degree": 4, "rewire": 0.1})),
        (" kregular : 6 ", ("kregular", {"degree": 6})),
    ],
)
def test_parse_topology_accepts_documented_specs(spec, expected) -> None:
    assert parse_topology(spec) == expected


@pytest.mark.parametrize(
    "spec",
    ["", "mesh", "ring:3", "kregular:4:0.1", "kregular:four", "smallworld:4:x", "smallworld:4:1:9"],
)
def test_parse_topology_rejects_bad_specs(spec) -> None:
    with pytest.raises(TopologyError):
        parse_topology(spec)


def test_parsed_spec_builds_a_graph() -> None:
    name, kwargs = parse_topology("smallworld:4:0.1")
    graph = build_topology(name, 12, seed=3, **kwargs)
    assert is_connected(graph)


# ------------------------------------------------------------------ connectivity


@pytest.mark.parametrize(
    "graph,connected",
    [
        ({}, False),
        ({0: []}, True),
        ({0: [], 1: []}, False),
        ({0: [1], 1: [0], 2: [3], 3: [2]}, False),
        ({0: [1], 1: [2], 2: []}, True),  # edges read as undirected
        ({0: [1], 1: [0]}, True),
        ({0: [1]}, True),  # node 1 appears only as a neighbour
    ],
)
def test_is_connected(graph, connected) -> None:
    assert is_connected(graph) is connected
