"""The one-peer exponential graph in the virtual swarm: real protocol, codec and mixing."""

from __future__ import annotations

import numpy as np
import pytest

from swarm.robust import Aggregation
from swarm.topology import build_topology
from swarm.virtual_swarm import VirtualSwarm
from tests.fakes import FakeResult, FakeTrainer, fake_federation
from tests.sim.test_fault_properties import Faults, protocol


class JumpTrainer(FakeTrainer):
    """'Training' sets a site's weights to its own target: one round leaves every peer
    with a different model, which gossip alone must then average."""

    def train(self, weights, data, seed):
        return FakeResult({"w": self.targets[data.site].copy()}, 1.0, len(data))


#: a link whose round trip (0.2 +- 0.1 s) fits the first fetch try (0.5 s): no exchange is
#: cut short by its deadline, so averaging is exact (a late partner is the fault tests' business;
#: at 0.25 +- 0.1 s one way, half the seeds lose one step to a timed-out fetch)
QUICK = Faults(delay=0.1, jitter=0.05)


def one_round(topology: str, n: int = 8, aggregator: str = "clipped", seed: int = 3):
    trainer = JumpTrainer(n, seed=seed)
    config = protocol(gossip_steps=3, max_rounds=1)
    swarm = VirtualSwarm(trainer, fake_federation(n, 3), build_topology(topology, n),
                         trainer.initial_weights(0), config, QUICK, seed=seed,
                         train_seed=lambda site, r: r, sample_weighted=False,
                         aggregation=Aggregation(aggregator), time_varying=topology == "onepeer-exp")
    swarm.run()
    return swarm, trainer


@pytest.mark.parametrize("seed", [3, 4, 7])
@pytest.mark.parametrize("aggregator", ["mean", "clipped"])
def test_three_one_peer_steps_average_eight_peers_exactly(aggregator, seed):
    swarm, trainer = one_round("onepeer-exp", aggregator=aggregator, seed=seed)
    for peer in swarm.peers:
        np.testing.assert_allclose(peer.node.weights["w"], trainer.targets.mean(axis=0), atol=1e-6)


def test_a_ring_does_not_average_in_three_steps():
    swarm, trainer = one_round("ring", aggregator="mean")
    spread = max(float(np.abs(p.node.weights["w"] - trainer.targets.mean(axis=0)).max()) for p in swarm.peers)
    assert spread > 0.05


def test_peers_serve_about_half_the_model_bytes_of_a_ring():
    # one model per step instead of one per neighbour (two on a ring); the rest are the
    # final models fetched around the stop, alike in both
    onepeer, _ = one_round("onepeer-exp")
    ring, _ = one_round("ring")
    assert sum(p.served_bytes for p in onepeer.peers) < 0.6 * sum(p.served_bytes for p in ring.peers)


def test_q8_exchanges_average_to_within_the_quantisation_error():
    trainer = JumpTrainer(8, seed=3)
    swarm = VirtualSwarm(trainer, fake_federation(8, 3), build_topology("onepeer-exp", 8),
                         trainer.initial_weights(0), protocol(gossip_steps=3, max_rounds=1), QUICK, seed=3,
                         train_seed=lambda site, r: r, sample_weighted=False, q8=True, time_varying=True)
    swarm.run()
    step = float(np.abs(trainer.targets).max()) / 127
    errors = [float(np.abs(p.node.weights["w"] - trainer.targets.mean(axis=0)).max()) for p in swarm.peers]
    assert max(errors) < 3 * step / 2 and max(errors) > 0  # three lossy exchanges, each off by <= step/2


def test_a_q8_model_with_a_forged_scale_is_refused_after_it_is_rebuilt():
    from gossip.codec import WeightsMessage, encode
    from swarm.node import SwarmNode
    from tests.unit.test_codec import _with_header

    node = SwarmNode("a", lambda w, d, s: None, [0] * 10, "m", {"w": np.ones(4, np.float32)}, {}, q8=True)
    forged = _with_header(bytes(encode(WeightsMessage("m", 0, "b", 10, {"w": np.ones(4, np.float32)}), q8=True)),
                          q8=[1e6])
    assert node.check("b", forged, 0) is None
    assert sum(node.stats.rejected.values()) == 1


class CountingTrainer(FakeTrainer):
    """The fake trainer, counting the rounds each site trained."""

    def __init__(self, n_sites: int, seed: int) -> None:
        super().__init__(n_sites, seed)
        self.trained = [0] * n_sites

    def train(self, weights, data, seed):
        self.trained[data.site] += 1
        return super().train(weights, data, seed)


@pytest.mark.parametrize("seed", [0, 1])
def test_a_member_down_from_the_start_does_not_hold_up_its_partners(seed):
    # peer 3 never starts; its partners 2, 1 and 7 face it one step in three. Once it is
    # suspected they are not cut off (their other partners are live): the step goes on
    # without a mix, as a sit-out, instead of a hold of --isolation-wait every third step
    # (which left them behind, catching up every third round without training)
    from swarm.faults import Crash

    rounds = 15
    trainer = CountingTrainer(8, seed)
    faults = Faults(delay=QUICK.delay, jitter=QUICK.jitter, crashes=(Crash(3, 0),))
    swarm = VirtualSwarm(trainer, fake_federation(8, seed), build_topology("onepeer-exp", 8),
                         trainer.initial_weights(seed), protocol(gossip_steps=3, max_rounds=rounds), faults,
                         seed=seed, train_seed=lambda site, r: seed * 1009 + site * 31 + r, time_varying=True,
                         max_events=400_000)
    runs = swarm.run()
    assert trainer.trained[3] == 0
    for partner in (1, 2, 7):
        assert runs[partner].stop_round is not None
        assert trainer.trained[partner] >= rounds - 3, trainer.trained
