"""Seeded communication graphs for a swarm: who gossips with whom.

A topology is a plain ``dict[int, list[int]]``: nodes ``0..n-1``, each with its
sorted neighbours. Every graph built here is undirected (symmetric), free of
self-loops, connected, and a pure function of its arguments and seed, so a
simulation can be replayed exactly.
"""

from __future__ import annotations

import random
from collections import deque
from numbers import Real
from typing import Any, Mapping, Sequence

import networkx as nx

from swarm.errors import TopologyError
from swarm.schedule import onepeer_neighbours

__all__ = ["TOPOLOGIES", "build_topology", "parse_topology", "is_connected"]

#: Names accepted by :func:`build_topology`.
TOPOLOGIES = ("ring", "full", "kregular", "smallworld", "exponential", "onepeer-exp")

#: Attempts at drawing a connected random regular graph before giving up.
_KREGULAR_TRIES = 100
#: Attempts at drawing a connected Watts–Strogatz graph before giving up.
_SMALLWORLD_TRIES = 100


def _from_edges(n: int, edges: Any) -> dict[int, list[int]]:
    """Adjacency lists for nodes ``0..n-1`` from an iterable of ``(u, v)`` edges."""
    sets: dict[int, set[int]] = {node: set() for node in range(n)}
    for u, v in edges:
        sets[u].add(v)
        sets[v].add(u)
    return {node: sorted(adjacent) for node, adjacent in sets.items()}


def _ring(n: int) -> dict[int, list[int]]:
    """Cycle ``0-1-...-(n-1)-0``; one edge for ``n == 2``, no edge for ``n == 1``."""
    return _from_edges(n, ((i, (i + 1) % n) for i in range(n) if n > 1))


def _full(n: int) -> dict[int, list[int]]:
    """Complete graph: everyone is everyone's neighbour."""
    return {node: [other for other in range(n) if other != node] for node in range(n)}


def _exponential(n: int) -> dict[int, list[int]]:
    """Node ``i`` linked to ``i +- 2**k mod n`` for every ``2**k < n``, made undirected."""
    edges = []
    hop = 1
    while hop < n:
        edges.extend((i, (i + hop) % n) for i in range(n))
        hop *= 2
    return _from_edges(n, edges)


def _kregular(n: int, degree: int, seed: int) -> dict[int, list[int]]:
    """Random connected ``degree``-regular graph.

    Degree 2 is drawn directly as a random Hamiltonian cycle (a random 2-regular
    graph is usually several disjoint cycles). Dense requests (``degree > (n-1)/2``)
    are drawn as the complement of a random ``(n-1-degree)``-regular graph, because
    networkx's pairing method takes minutes there (e.g. n=60, degree=58); such
    graphs are always connected. Other degrees use networkx and redraw, from one
    seeded generator, until the graph is connected.
    """
    if degree < 1 or degree >= n:
        raise TopologyError(f"kregular: need 1 <= degree < n (n={n}, degree={degree})")
    if n * degree % 2:
        raise TopologyError(f"kregular: n*degree must be even (n={n}, degree={degree})")
    if degree == 1 and n > 2:
        raise TopologyError(f"kregular: degree 1 is a disconnected matching for n > 2 (n={n})")
    rng = random.Random(seed)
    if degree == 2:
        order = list(range(n))
        rng.shuffle(order)
        return _from_edges(n, ((order[i], order[(i + 1) % n]) for i in range(n)))
    if 2 * degree > n - 1:
        # Minimum degree >= (n-1)/2: any two nodes are adjacent or share a neighbour.
        sparse = nx.random_regular_graph(n - 1 - degree, n, seed=rng)
        return _from_edges(n, nx.complement(sparse).edges())
    for _ in range(_KREGULAR_TRIES):
        graph = nx.random_regular_graph(degree, n, seed=rng)
        if nx.is_connected(graph):
            return _from_edges(n, graph.edges())
    raise TopologyError(
        f"kregular: no connected graph in {_KREGULAR_TRIES} draws "
        f"(n={n}, degree={degree}, seed={seed})"
    )


def _smallworld(n: int, degree: int, rewire: float, seed: int) -> dict[int, list[int]]:
    """Connected Watts–Strogatz graph; odd ``degree`` is rounded up to the next even number."""
    k = degree + degree % 2
    if degree < 1:
        raise TopologyError(f"smallworld: degree must be >= 1 (degree={degree})")
    if k >= n:
        raise TopologyError(
            f"smallworld: degree rounded up to even ({k}) must be < n (n={n}, degree={degree})"
        )
    if not 0.0 <= rewire <= 1.0:
        raise TopologyError(f"smallworld: rewire must be in [0, 1] (rewire={rewire})")
    try:
        graph = nx.connected_watts_strogatz_graph(n, k, rewire, tries=_SMALLWORLD_TRIES, seed=seed)
    except nx.NetworkXError as exc:
        raise TopologyError(
            f"smallworld: no connected graph in {_SMALLWORLD_TRIES} draws "
            f"(n={n}, degree={degree}, rewire={rewire}, seed={seed}): {exc}"
        ) from exc
    return _from_edges(n, graph.edges())


def _is_int(value: object) -> bool:
    """True for a real ``int`` (``bool`` excluded)."""
    return isinstance(value, int) and not isinstance(value, bool)


def build_topology(
    name: str, n: int, *, degree: int = 3, rewire: float = 0.2, seed: int = 0
) -> dict[int, list[int]]:
    """Build a named, seeded, connected undirected graph on nodes ``0..n-1``.

    ``ring``: a cycle (degree 2; ``n == 2`` is one edge, ``n == 1`` one lone node).
    ``full``: complete graph (degree ``n - 1``). ``exponential``: ``i`` linked to
    ``i +- 2**k mod n`` (degree about ``2 log2 n``, diameter about ``log2 n``).
    ``onepeer-exp``: the links of the one-peer exponential graph, ``i`` to ``i XOR 2**k``
    (a hypercube); the swarm then exchanges with one of them per step (``swarm.schedule``).
    ``kregular``: random connected ``degree``-regular graph. ``smallworld``:
    connected Watts–Strogatz graph on a ring lattice of ``degree`` nearest
    neighbours (odd ``degree`` rounded up to even), each edge rewired with
    probability ``rewire``. ``degree`` and ``rewire`` are ignored where unused;
    ``ring``, ``full``, ``exponential`` and ``onepeer-exp`` are deterministic and ignore ``seed``.

    Returns
    -------
    dict
        ``{node: sorted neighbours}`` for nodes ``0..n-1`` in order.

    Raises
    ------
    TopologyError
        Unknown name, ``n < 1``, impossible ``degree`` or ``rewire``, or no
        connected graph could be drawn; the message says which and why.
    """
    if name not in TOPOLOGIES:
        raise TopologyError(f"unknown topology {name!r}: expected one of {', '.join(TOPOLOGIES)}")
    if not _is_int(n) or n < 1:
        raise TopologyError(f"{name}: n must be an integer >= 1 (n={n!r})")
    if not _is_int(degree):
        raise TopologyError(f"{name}: degree must be an integer (degree={degree!r})")
    if isinstance(rewire, bool) or not isinstance(rewire, Real):
        raise TopologyError(f"{name}: rewire must be a number (rewire={rewire!r})")
    if not _is_int(seed):
        raise TopologyError(f"{name}: seed must be an integer (seed={seed!r})")
    if name == "ring":
        graph = _ring(n)
    elif name == "full":
        graph = _full(n)
    elif name == "exponential":
        graph = _exponential(n)
    elif name == "onepeer-exp":
        graph = onepeer_neighbours(n)  # every partner of the time-varying graph (swarm.schedule)
    elif name == "kregular":
        graph = _kregular(n, degree, seed)
    else:
        graph = _smallworld(n, degree, float(rewire), seed)
    if not is_connected(graph):  # unreachable for the builders above; kept as a guard
        raise TopologyError(f"{name}: built a disconnected graph (n={n}, seed={seed})")
    return graph


def parse_topology(spec: str) -> tuple[str, dict[str, Any]]:
    """Parse a command-line topology spec into ``(name, keyword arguments)``.

    Accepted forms: ``ring``, ``full``, ``exponential``, ``kregular:DEGREE``,
    ``smallworld:DEGREE`` and ``smallworld:DEGREE:REWIRE``, e.g.
    ``"smallworld:4:0.1" -> ("smallworld", {"degree": 4, "rewire": 0.1})``. The
    keywords feed :func:`build_topology`, which checks their values against ``n``.

    Raises
    ------
    TopologyError
        Unknown name, too many fields, or a field that is not a number.
    """
    name, *fields = [part.strip() for part in spec.strip().split(":")]
    if name not in TOPOLOGIES:
        raise TopologyError(
            f"unknown topology {name!r} in {spec!r}: expected one of {', '.join(TOPOLOGIES)}"
        )
    allowed = {"kregular": 1, "smallworld": 2}.get(name, 0)
    if len(fields) > allowed:
        raise TopologyError(f"{name}: takes at most {allowed} parameter(s), got {spec!r}")
    kwargs: dict[str, Any] = {}
    if fields:
        try:
            kwargs["degree"] = int(fields[0])
        except ValueError:
            raise TopologyError(f"{name}: degree must be an integer, got {fields[0]!r}") from None
    if len(fields) > 1:
        try:
            kwargs["rewire"] = float(fields[1])
        except ValueError:
            raise TopologyError(f"{name}: rewire must be a number, got {fields[1]!r}") from None
    return name, kwargs


def is_connected(neighbours: Mapping[int, Sequence[int]]) -> bool:
    """True if every node is reachable from every other, reading edges as undirected.

    An empty graph is not connected; a single node is. Nodes that appear only
    inside neighbour lists count as nodes too.
    """
    undirected: dict[int, set[int]] = {node: set() for node in neighbours}
    for node, adjacent in neighbours.items():
        for other in adjacent:
            undirected[node].add(other)
            undirected.setdefault(other, set()).add(node)
    if not undirected:
        return False
    start = next(iter(undirected))
    seen = {start}
    queue = deque([start])
    while queue:
        for other in undirected[queue.popleft()]:
            if other not in seen:
                seen.add(other)
                queue.append(other)
    return len(seen) == len(undirected)
