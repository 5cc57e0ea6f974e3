"""One hostile peer in a simulated swarm: plain gossip follows it, robust mixing does not.

The hostile peer runs the real protocol but serves its model sign-flipped and scaled
every time it offers one (a test-only attacker; the fast fake trainer of ``tests.fakes``
pulls every honest peer towards its site's target, so the honest optimum is known).
Without an attacker the honest peers end within about 0.6-0.8 of that optimum. The relative
norm check is turned off here to test the mixing rule alone. Clipping leaves a bias bounded
by the clipping radius (the same at x20 as at x100); trimmed mean and median, over five
models of which one is hostile, leave hardly any.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from swarm.robust import Aggregation
from swarm.topology import build_topology
from swarm.virtual_swarm import VirtualSwarm
from tests.fakes import FakeTrainer, fake_federation
from tests.sim.test_fault_properties import Faults, protocol

HOSTILE = 0
#: sign-flipped and x100 (values stay far below the absolute bound of 1e4)
SCALE = -100.0


def make_hostile(node, scale: float) -> None:
    """Serve ``scale`` times the node's model from now on (its own model stays honest)."""
    honest_encode = node.encode_model

    def encode_model(round_: int):
        own = node.weights
        node.weights = {k: scale * v for k, v in own.items()}
        try:
            return honest_encode(round_)
        finally:
            node.weights = own

    node.encode_model = encode_model


def honest_distance(kind: str, seed: int, *, attacker: bool = True, topology: str = "kregular") -> float:
    """Largest distance of an honest peer's final model to the honest optimum."""
    n = 8
    graph = build_topology(topology, n, seed=seed, degree=4)
    trainer = FakeTrainer(n, seed)
    config = dataclasses.replace(protocol(gossip_steps=2, max_rounds=15),
                                 convergence=dataclasses.replace(protocol().convergence, min_rounds=15,
                                                                 max_rounds=15))
    swarm = VirtualSwarm(trainer, fake_federation(n, seed), graph, trainer.initial_weights(seed), config,
                         Faults(), seed=seed, train_seed=lambda site, r: seed * 100_003 + site * 1009 + r,
                         aggregation=Aggregation(kind), max_events=400_000)
    for peer in swarm.peers:
        peer.node.aggregation = dataclasses.replace(peer.node.aggregation, max_norm_ratio=None)  # the mixing rule alone (the norm check: tests/unit/test_node.py)
    if attacker:
        make_hostile(swarm.peers[HOSTILE].node, SCALE)
    swarm.run()
    optimum = trainer.targets[[i for i in range(n) if i != HOSTILE]].mean(axis=0)
    return max(float(np.linalg.norm(p.node.weights["w"] - optimum)) for p in swarm.peers if p.index != HOSTILE)


@pytest.mark.parametrize("seed", [0, 2])
def test_plain_gossip_is_dragged_away_by_one_hostile_peer(seed):
    assert honest_distance("mean", seed, attacker=False) < 1.0
    assert honest_distance("mean", seed) > 100.0


@pytest.mark.parametrize("kind, bound", [("clipped", 3.0), ("trimmed", 1.0), ("median", 1.0)])
@pytest.mark.parametrize("seed", [0, 2])
def test_robust_mixing_keeps_the_honest_peers_near_their_optimum(kind, bound, seed):
    assert honest_distance(kind, seed) < bound
