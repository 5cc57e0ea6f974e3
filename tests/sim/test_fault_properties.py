"""Property tests of the leader-free protocol under random topologies and faults.

Every swarm runs the real ``PeerProtocol``, codec, control codec, validation and mixing
on a virtual clock; only training is a fast fake (``tests.fakes``). Nothing sleeps.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from gossip.control import StopDecision
from swarm.config import LearningConfig, TimingConfig, protocol_config
from swarm.convergence import ConvergenceConfig
from swarm.faults import Crash, Cut, FaultConfig, LateJoin
from swarm.protocol import ProtocolConfig, SendControl
from swarm.topology import build_topology, is_connected
from swarm.virtual_swarm import VirtualSwarm
from tests.fakes import FakeTrainer, fake_federation

MAX_ROUNDS = 20
#: virtual seconds per local epoch of these properties (the simulation's default is 5)
EPOCH = 1.0


def Faults(**kwargs) -> FaultConfig:  # noqa: N802 - stands for the config class
    """A FaultConfig with this module's epoch."""
    return FaultConfig(**{"train_time": EPOCH, **kwargs})


def protocol(gossip_steps: int = 1, max_rounds: int = MAX_ROUNDS) -> ProtocolConfig:
    """The protocol these properties were established with: timings in local epochs of
    ``EPOCH`` virtual seconds (heartbeat 1.5, suspicion 6, deadline
    0.25-10, fetch 2, linger 3 epochs), built by the same function as every peer's, with a
    convergence vote suited to the fake trainer."""
    epoch = EPOCH
    timing = TimingConfig(heartbeat=1.5 * epoch, suspect_after=6 * epoch, deadline_min=0.25 * epoch,
                          deadline_initial=epoch, deadline_max=10 * epoch, fetch_timeout=2 * epoch,
                          linger=3 * epoch, isolation_wait=60 * epoch)
    learning = LearningConfig(data="fake", partition="iid", gossip_steps=gossip_steps, rounds=max_rounds,
                              final_agreement=0)  # the default of then: the stop round is the last
    return dataclasses.replace(
        protocol_config(learning, timing),
        convergence=ConvergenceConfig(window=3, metric_tol=0.01, distance_tol=1.5, min_rounds=4,
                                      max_rounds=max_rounds),
    )


class WatchedSwarm(VirtualSwarm):
    """Checks the invariants after every batch of actions a peer performs."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.violations: list[str] = []
        self.last_phase: dict[int, tuple[int, int]] = {}
        self.max_spread = 0
        self.decisions: list[tuple[float, str, set[str]]] = []
        self.started_at: dict[int, float] = {}

    def _start(self, peer, fresh) -> None:
        self.started_at[peer.index] = self.now
        self.last_phase.pop(peer.index, None)  # a restart resumes from its checkpoint
        super()._start(peer, fresh)

    def _perform(self, peer, actions) -> None:
        for action in actions:
            if (isinstance(action, SendControl) and isinstance(action.msg, StopDecision)
                    and action.msg.origin == peer.id and peer.proto is not None):
                self.decisions.append((self.now, peer.id, peer.proto.alive_members(self.now)))
        super()._perform(peer, actions)
        if peer.alive and peer.proto is not None:
            before = self.last_phase.get(peer.index)
            if before is not None and peer.proto.phase < before:
                self.violations.append(f"{peer.id} went back from {before} to {peer.proto.phase}")
            self.last_phase[peer.index] = peer.proto.phase
        # a (re)started peer gets suspect_after seconds to hear the swarm and catch up
        settle = self.protocol.suspect_after
        active = [p.proto.round for p in self.peers
                  if p.alive and p.proto is not None and p.proto.stopped_at is None
                  and self.now - self.started_at.get(p.index, 0.0) > settle]
        if active:
            self.max_spread = max(self.max_spread, max(active) - min(active))


def run_swarm(n, topology, seed, faults, gossip_steps=1, max_rounds=MAX_ROUNDS, **overrides):
    graph = build_topology(topology, n, seed=seed, degree=3)
    trainer = FakeTrainer(n, seed)
    config = protocol(gossip_steps, max_rounds)
    swarm = WatchedSwarm(
        trainer, fake_federation(n, seed), graph, trainer.initial_weights(seed),
        dataclasses.replace(config, **overrides), faults,
        seed=seed, train_seed=lambda site, r: seed * 100_003 + site * 1009 + r, max_events=400_000,
    )
    runs = swarm.run()
    return swarm, runs


def _connected(graph) -> bool:
    """Connected once the crashed peers are gone (a partitioned swarm cannot agree)."""
    if not graph:
        return False
    index = {old: new for new, old in enumerate(sorted(graph))}
    return is_connected({index[i]: [index[j] for j in nb] for i, nb in graph.items()})


@st.composite
def scenarios(draw):
    n = draw(st.integers(4, 10))
    topology = draw(st.sampled_from(["ring", "kregular", "smallworld", "exponential", "full"]))
    if topology == "kregular" and n % 2:
        n += 1
    if topology == "smallworld" and n < 6:
        n = 6
    delay = draw(st.sampled_from([0.0, 0.02, 0.1, 0.3]))
    faults = Faults(
        delay=delay,
        jitter=draw(st.sampled_from([0.0, 0.5])) * delay,
        drop=draw(st.sampled_from([0.0, 0.05, 0.15])),
        stragglers=draw(st.integers(0, 2)),
        slowdown=draw(st.sampled_from([2.0, 5.0])),
        crashes=tuple(
            Crash(peer, draw(st.integers(1, 8)), draw(st.sampled_from([None, 10, 12])))
            for peer in draw(st.lists(st.integers(0, n - 1), max_size=2, unique=True))
        ),
    )
    return n, topology, draw(st.integers(0, 10_000)), faults, draw(st.integers(1, 2))


@settings(max_examples=60, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_invariants_hold_under_random_faults(scenario):
    n, topology, seed, faults, steps = scenario
    faults = Faults(**{**faults.__dict__, "crashes": tuple(
        c for c in faults.crashes if c.back_at is None or c.back_at > c.at_round)})
    graph = build_topology(topology, n, seed=seed, degree=3)
    down = {c.peer for c in faults.crashes}
    assume(_connected({i: [j for j in nb if j not in down] for i, nb in graph.items() if i not in down}))
    swarm, runs = run_swarm(n, topology, seed, faults, gossip_steps=steps)
    cfg = swarm.protocol

    # rounds never go backwards
    assert swarm.violations == []

    # every live peer stops, all at the same round, and exits
    live = [p for p in swarm.peers if p.alive]
    assert live, "somebody must be up"
    assert all(runs[p.index].exited for p in live)
    assert len({runs[p.index].stop_round for p in live}) == 1

    # live peers stay within a bounded number of rounds of each other: a straggler falls
    # behind by at most about its slowdown before it catches up; drops add a round or two
    slow = faults.slowdown if faults.stragglers else 1.0
    assert swarm.max_spread <= cfg.catchup_lag + math.ceil(slow) + 5

    # a crashed peer is not counted in a convergence decision once it can be suspected
    slack = cfg.suspect_after + n * (faults.delay + faults.jitter + 0.01) + cfg.heartbeat
    for when, _, alive in swarm.decisions:
        for member in alive:
            peer = swarm.peers[swarm.ids.index(member)]
            if not peer.alive or (runs[peer.index].crashed_at is not None
                                  and runs[peer.index].restarted_at is not None
                                  and runs[peer.index].crashed_at <= when < runs[peer.index].restarted_at):
                assert when - runs[peer.index].crashed_at <= slack

    # a returning peer caught up: it finished at the common stop round
    for crash in faults.crashes:
        run = runs[crash.peer]
        if run.restarted_at is not None:
            assert run.exited and run.stop_round == runs[live[0].index].stop_round


def test_crashed_peers_do_not_block_the_others():
    """Three of eight peers die for good at round 3: the rest finish every round anyway."""
    faults = Faults(crashes=(Crash(1, 3), Crash(4, 3), Crash(6, 3)))
    swarm, runs = run_swarm(8, "smallworld", 7, faults, max_rounds=15)
    live = [runs[p.index] for p in swarm.peers if p.alive]
    assert len(live) == 5
    assert all(r.exited and r.stop_round is not None and r.last_round == r.stop_round for r in live)
    assert all(p.proto.stats.suspicions >= 1 for p in swarm.peers if p.alive
               and any(swarm.ids[j] in p.proto.neighbours for j in (1, 4, 6)))


def test_a_straggler_does_not_set_the_pace():
    """Time per round with one 5x straggler stays far below 5x the fault-free time.

    One seed's ratio varies between about 1.15 and 1.6 (seeds 1-8, with the same mean before and
    after the aggregate control plane), so the bound is on the mean of three seeds, paired."""

    def per_round(runs):
        return np.mean([r.finish_time / (r.last_round + 1) for r in runs if not r.straggler])

    ratios = []
    for seed in (1, 2, 3):
        _, base_runs = run_swarm(8, "smallworld", seed, Faults(), max_rounds=12)
        slow, slow_runs = run_swarm(8, "smallworld", seed, Faults(stragglers=1, slowdown=5.0), max_rounds=12)
        ratios.append(per_round(slow_runs) / per_round(base_runs))
        straggler = next(r for r in slow_runs if r.straggler)
        assert straggler.exited and straggler.stop_round == 11
        assert slow.peers[straggler.peer].proto.stats.catch_ups >= 1
    assert np.mean(ratios) < 1.6 and max(ratios) < 2.0, ratios


def test_a_peer_cut_off_for_a_while_holds_then_catches_up_and_stops_with_the_rest():
    """Peer 2's links go down at its round 3 until the swarm reaches round 9. It holds its
    round instead of running on alone, catches up to the swarm when the links are back, and
    the swarm never adopts a model it trained alone."""
    faults = Faults(cuts=(Cut(2, 3, 9),))
    swarm, runs = run_swarm(8, "smallworld", 4, faults, max_rounds=16, isolation_wait=100.0)
    cut, others = swarm.peers[2].proto, [p.proto for p in swarm.peers if p.index != 2]

    assert swarm.control_dropped > 0  # the cut was there
    assert all(r.exited for r in runs) and len({r.stop_round for r in runs}) == 1
    assert cut.stats.holds >= 1 and cut.stats.catch_ups >= 1
    assert sum(p.stats.catch_ups for p in others) == 0
    assert runs[2].rounds_completed < min(r.rounds_completed for r in runs if r.peer != 2)


def test_without_the_hold_a_cut_off_peer_runs_ahead_alone():
    """The positive control of the test above: ``isolation_wait=0`` is the old behaviour."""
    faults = Faults(cuts=(Cut(2, 3, 9),))
    swarm, runs = run_swarm(8, "smallworld", 4, faults, max_rounds=16, isolation_wait=0.0)

    # it never waited: as many rounds as anyone, trained alone, and never caught up
    assert runs[2].rounds_completed >= min(r.rounds_completed for r in runs if r.peer != 2)
    assert swarm.peers[2].proto.stats.catch_ups == 0


def test_late_joiner_catches_up_and_stops_with_the_rest():
    faults = Faults(late=(LateJoin(2, 5),))
    swarm, runs = run_swarm(6, "ring", 1, faults, max_rounds=14)
    joiner = runs[2]
    assert joiner.joined_at > 0
    assert swarm.peers[2].proto.stats.catch_ups >= 1
    assert joiner.exited and joiner.stop_round == runs[0].stop_round


def test_swarm_converges_before_max_rounds_when_losses_plateau():
    swarm, runs = run_swarm(6, "full", 2, Faults(), max_rounds=60)
    stop = {r.stop_round for r in runs}
    assert len(stop) == 1 and stop.pop() < 59
    assert all(r.stop_reason.startswith("converged") for r in runs)


def test_same_seed_same_story():
    faults = Faults(drop=0.1, stragglers=1, crashes=(Crash(3, 4, 9),))
    a, runs_a = run_swarm(8, "smallworld", 11, faults)
    b, runs_b = run_swarm(8, "smallworld", 11, faults)
    assert runs_a == runs_b
    assert all(np.array_equal(pa.node.weights["w"], pb.node.weights["w"]) for pa, pb in zip(a.peers, b.peers))


def test_lost_messages_are_recovered_so_every_peer_trains_every_round():
    """10% of all messages and transfers lost: a peer asks again for the announcements it
    misses and retries transfers after a few round trips, and its deadline learns from
    the neighbours it gave up on, so peers stay in step: none runs ahead alone, none
    falls behind far enough to catch up by adopting a model (skipping its training)."""
    swarm, runs = run_swarm(12, "smallworld", 5, Faults(drop=0.1), gossip_steps=3)
    live = [p for p in swarm.peers if p.alive]
    assert swarm.control_dropped > 100 and swarm.transfers_dropped > 10

    assert all(runs[p.index].exited for p in live)
    assert sum(p.proto.stats.catch_ups for p in live) == 0
    assert all(p.proto.stats.rounds_completed == runs[p.index].stop_round + 1 for p in live)
    assert swarm.max_spread <= 1
