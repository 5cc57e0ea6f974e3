"""Bounded fanout in a whole simulated swarm (issue 11): each peer sends its records and
summaries to ``fanout`` neighbours per heartbeat, fewer than its degree, so a neighbour hears
its own record only every few heartbeats, and while peers train longer than
``suspect_after`` nothing else crosses the link. Liveness must not suffer: no live peer is ever
suspected (without the aggregates vouching for silent neighbours, some are), and a crashed one
is given up by every neighbour between ``suspect_after`` and about a heartbeat more after its
last message.
"""

from __future__ import annotations

import dataclasses

from swarm.protocol import SendControl
from swarm.topology import build_topology
from swarm.virtual_swarm import VirtualSwarm
from tests.fakes import FakeTrainer, fake_federation
from tests.sim.test_fault_properties import Crash, Faults, protocol

N = 32  # exponential graph: degree 9
ROUNDS = 12
FANOUT = 2  # a neighbour's own record every ceil(9 / 2) = 5 heartbeats: 7.5 s, past suspect_after (6 s)
#: local training longer than suspect_after: no announcement crosses a link meanwhile, only heartbeats
TRAIN_TIME = 8.0


class SuspicionWatch(VirtualSwarm):
    """Records when each peer sent last and when each peer first suspected each neighbour."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.last_sent: dict[str, float] = {}
        self.first_suspected: dict[tuple[str, str], float] = {}
        self.control_sends: dict[str, int] = {}

    def send_from(self, peer, to, data) -> None:
        self.last_sent[peer.id] = self.now
        super().send_from(peer, to, data)

    def _perform(self, peer, actions) -> None:
        self.control_sends[peer.id] = self.control_sends.get(peer.id, 0) + sum(
            isinstance(a, SendControl) for a in actions)
        super()._perform(peer, actions)
        if peer.alive and peer.proto is not None:
            for other in peer.proto.suspected_neighbours(self.now):
                self.first_suspected.setdefault((peer.id, other), self.now)


def run(fanout: int, faults=None, seed: int = 3) -> tuple[SuspicionWatch, list]:
    config = protocol(gossip_steps=1, max_rounds=ROUNDS)
    config = dataclasses.replace(config, fanout=fanout, convergence=dataclasses.replace(
        config.convergence, min_rounds=ROUNDS + 1))
    graph = build_topology("exponential", N, seed=seed)
    trainer = FakeTrainer(N, seed)
    swarm = SuspicionWatch(trainer, fake_federation(N, seed), graph, trainer.initial_weights(seed), config,
                           faults or Faults(train_time=TRAIN_TIME), seed=seed, train_seed=lambda site, r: site * 1009 + r)
    return swarm, swarm.run()


def test_with_a_fanout_below_the_degree_no_live_peer_is_ever_suspected():
    swarm, runs = run(FANOUT)
    assert min(len(v) for v in swarm.topology.values()) > FANOUT
    assert swarm.first_suspected == {}
    assert {r.last_round for r in runs} == {ROUNDS - 1}
    # and the records and summaries did go to fewer neighbours than with a fanout of the degree
    wide, _ = run(fanout=N)
    assert sum(swarm.control_sends.values()) < 0.8 * sum(wide.control_sends.values())


def test_a_crashed_peer_is_given_up_by_every_neighbour_within_suspect_after_and_a_heartbeat():
    config = protocol()
    swarm, runs = run(FANOUT, Faults(train_time=TRAIN_TIME, crashes=(Crash(peer=5, at_round=3),)))
    crashed = swarm.peers[5].id
    last = swarm.last_sent[crashed]
    neighbours = [swarm.peers[i].id for i in swarm.topology[5]]
    when = {p: swarm.first_suspected.get((p, crashed)) for p in neighbours}
    assert None not in when.values(), when
    # a peer looks at its neighbours at least every heartbeat (its timer): observation slack
    slack = config.heartbeat + 0.5
    for peer, at in when.items():
        assert last + config.suspect_after - 0.5 <= at <= last + config.suspect_after + config.heartbeat + slack, (
            peer, at - last)
    # nobody else was ever suspected, and the others ran every round
    assert {other for _, other in swarm.first_suspected} == {crashed}
    assert all(r.last_round == ROUNDS - 1 for i, r in enumerate(runs) if i != 5)
