"""Time-varying gossip: the one-peer exponential graph, one partner per exchange.

Ying et al. ("Exponential graph is provably efficient for decentralized deep training",
NeurIPS 2021) let node ``i`` talk at gossip step ``t`` to the single node at distance
``2**k``, ``k = t mod ceil(log2 n)``, with weight 1/2 each. For ``n`` a power of two the
product of ``log2 n`` such mixing matrices is exactly ``11^T / n``: the swarm averages
exactly, sending one model per peer per step instead of one per neighbour.

Here the partner at distance ``2**k`` is ``i XOR 2**k`` (the hypercube form of the same
graph): the pairing is symmetric, so both partners of a step wait for and mix with each
other, every step's matrix is a symmetric permutation average (doubly stochastic), and the
sample-aware Metropolis-Hastings weights of ``swarm.mixing`` stay reversible (with them the
swarm still converges to FedAvg's sample-weighted mean, but no longer exactly in ``log2 n``
steps). For ``n`` not a power of two a peer whose partner index is ``>= n`` sits the step
out (its row is the identity); averaging is then not exact.

The step counter ``t`` is ``round * gossip_steps + step``, so every peer derives the same
partner from the phase alone, without any message.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from swarm.errors import TopologyError

__all__ = ["OnePeerSchedule", "onepeer_cycle", "onepeer_matrix", "onepeer_neighbours", "onepeer_partner"]


def onepeer_cycle(n: int) -> int:
    """Steps in one cycle of partners: ``ceil(log2 n)`` (at least 1).

    Raises
    ------
    TopologyError
        For ``n < 1``.
    """
    if n < 1:
        raise TopologyError(f"onepeer-exp: n must be >= 1 (n={n})")
    return max(1, (n - 1).bit_length())


def onepeer_partner(i: int, n: int, t: int) -> int | None:
    """Node ``i``'s partner at gossip step ``t``: ``i XOR 2**(t mod cycle)``, None if ``>= n``.

    Raises
    ------
    TopologyError
        For ``i`` outside ``0..n-1`` or a negative ``t``.
    """
    if not 0 <= i < n or t < 0:
        raise TopologyError(f"onepeer-exp: need 0 <= i < n and t >= 0 (i={i}, n={n}, t={t})")
    if n == 1:
        return None
    other = i ^ (1 << (t % onepeer_cycle(n)))
    return other if other < n else None


def onepeer_neighbours(n: int) -> dict[int, list[int]]:
    """Every partner a node ever has (the hypercube on ``0..n-1``): the links to keep open."""
    cycle = onepeer_cycle(n)
    out: dict[int, list[int]] = {}
    for i in range(n):
        partners = {onepeer_partner(i, n, t) for t in range(cycle)}
        out[i] = sorted(p for p in partners if p is not None)
    return out


def onepeer_matrix(n: int, t: int) -> np.ndarray:
    """The (uniform) mixing matrix of step ``t``: 1/2 to self and 1/2 to the partner."""
    matrix = np.zeros((n, n))
    for i in range(n):
        j = onepeer_partner(i, n, t)
        if j is None:
            matrix[i, i] = 1.0
        else:
            matrix[i, i] = matrix[i, j] = 0.5
    return matrix


@dataclass(frozen=True)
class OnePeerSchedule:
    """Who a peer exchanges with in each phase of the one-peer exponential graph.

    Attributes
    ----------
    ids:
        The swarm's peer ids in index order (the same list at every peer).
    gossip_steps:
        Exchanges per round (the step counter runs across rounds).

    Raises
    ------
    TopologyError
        For an empty or repeated id list, or ``gossip_steps < 1``.
    """

    ids: tuple[str, ...]
    gossip_steps: int

    def __post_init__(self) -> None:
        if not self.ids or len(set(self.ids)) != len(self.ids):
            raise TopologyError("onepeer-exp: need distinct peer ids")
        if self.gossip_steps < 1:
            raise TopologyError(f"onepeer-exp: gossip_steps must be >= 1 (got {self.gossip_steps})")

    def all_partners(self, peer_id: str) -> frozenset[str]:
        """Every peer ``peer_id`` exchanges with in some phase (the links it needs)."""
        if peer_id not in self.ids:
            return frozenset()
        return frozenset(self.ids[j] for j in onepeer_neighbours(len(self.ids))[self.ids.index(peer_id)])

    def partners(self, peer_id: str, phase: tuple[int, int]) -> frozenset[str]:
        """The peers ``peer_id`` exchanges with in ``phase`` (at most one; none if not a member)."""
        if peer_id not in self.ids:
            return frozenset()
        round_, step = phase
        t = round_ * self.gossip_steps + min(step, self.gossip_steps - 1)
        j = onepeer_partner(self.ids.index(peer_id), len(self.ids), t)
        return frozenset() if j is None else frozenset({self.ids[j]})
