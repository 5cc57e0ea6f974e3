"""The control plane's cost per peer does not grow with the swarm (issue 11).

The same 4-regular graph (constant degree) with 16 and 128 simulated peers, fake training,
no faults: per peer and per heartbeat, the number of control messages sent and their bytes
stay the same, and so does the largest message. Before the aggregates, progress records
were flooded to every member, so both grew with n.
"""

from __future__ import annotations

import dataclasses
import math

from gossip.control import decode_control
from swarm.virtual_swarm import VirtualSwarm
from swarm.topology import build_topology
from tests.fakes import FakeTrainer, fake_federation
from tests.sim.test_fault_properties import Faults, protocol

ROUNDS = 8


class CountingSwarm(VirtualSwarm):
    """Counts every control message a peer sends, and its size, by message type."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.messages = 0
        self.bytes = 0
        self.largest: dict[str, int] = {}

    def send_from(self, peer, to, data) -> None:
        self.messages += 1
        self.bytes += len(data)
        kind = type(decode_control(data)).__name__
        self.largest[kind] = max(self.largest.get(kind, 0), len(data))
        super().send_from(peer, to, data)


def config():
    """The fault properties' protocol, without early stop (the same rounds at every size)."""
    return dataclasses.replace(protocol(1, ROUNDS), convergence=dataclasses.replace(
        protocol(1, ROUNDS).convergence, min_rounds=ROUNDS + 1))


def cost(n: int) -> tuple[float, float, dict[str, int]]:
    """Messages and bytes per peer per heartbeat, and the largest message of each type."""
    graph = build_topology("kregular", n, seed=1, degree=4)
    trainer = FakeTrainer(n, 1)
    settings = config()
    swarm = CountingSwarm(trainer, fake_federation(n, 1), graph, trainer.initial_weights(1), settings, Faults(),
                          seed=1, train_seed=lambda site, r: site * 1009 + r)
    runs = swarm.run()
    assert all(r.last_round == ROUNDS - 1 for r in runs)
    heartbeats = swarm.now / settings.heartbeat
    return swarm.messages / n / heartbeats, swarm.bytes / n / heartbeats, swarm.largest


def test_control_messages_per_peer_per_heartbeat_do_not_grow_with_the_swarm():
    small_msgs, small_bytes, small_largest = cost(16)
    big_msgs, big_bytes, big_largest = cost(128)

    assert big_msgs <= 1.25 * small_msgs, (small_msgs, big_msgs)
    assert big_bytes <= 1.25 * small_bytes, (small_bytes, big_bytes)
    # bounded size: only a summary's bitmaps (the window's epochs and the votes) may grow, by
    # n/8 bytes each at most; every other message keeps its size (a few digits more at most)
    bitmaps = math.ceil(config().suspect_after / config().heartbeat) + 2
    for kind, size in big_largest.items():
        grow = bitmaps * (128 - 16) // 8 if kind == "Summary" else 4
        assert size <= small_largest[kind] + grow, (kind, small_largest[kind], size)
