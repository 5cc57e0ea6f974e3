"""Bounds of the sans-I/O ``PeerProtocol`` against a hostile neighbour: nothing it sends grows
the peer's buffers, member table or work per message without bound (peer "a", neighbours
"b" and "c", driven by hand)."""

from __future__ import annotations

import dataclasses
import time

from gossip.control import Announce, Progress, Skip, StopDecision, encode_control
from swarm.convergence import ConvergenceConfig
from swarm.executor import PeerExecutor
from swarm.membership import MAX_MEMBER_ID_BYTES
from swarm.node import SwarmNode
from swarm.peer_state import fetch_limit
from swarm.protocol import (
    ControlIn, Fetch, FetchDone, Mixed, ModelReady, PeerProtocol, Reject, SendControl,
    TimerFired,
)
from tests.fakes import FakeTrainer, fake_federation
from tests.unit.test_executor import FakeSeam
from tests.unit.test_protocol import BASE as PROTOCOL_BASE

BASE = dataclasses.replace(PROTOCOL_BASE, gossip_steps=2, max_pending=4,
                           convergence=ConvergenceConfig(max_rounds=1_000_000, window=2, min_rounds=2))
DIGEST = "0" * 32


def started(is_member=None, **overrides) -> PeerProtocol:
    proto = PeerProtocol("a", ["b", "c"], dataclasses.replace(BASE, **overrides), is_member=is_member)
    proto.start(0.0)
    return proto


def announce(round_: int, step: int, size: int = 1000, sender: str = "b") -> ControlIn:
    return ControlIn(sender, Announce(sender, round_, step, DIGEST, size, 50, 2))


def progress(origin: str, seq: int = 1, via: str = "b") -> ControlIn:
    return ControlIn(via, Progress(origin, seq, 0, 0.5, 0.5, 0.01, False, 0, 5))


# ---------------------------------------------------------------- per-phase buffers
def test_a_flood_of_announcements_of_many_phases_keeps_at_most_max_pending_per_sender():
    proto = started()

    for i in range(2000):
        proto.handle(announce(1 + i // 2, i % 2), 0.1)
        assert proto.catch_up.pending() <= BASE.max_pending

    # the furthest phases are the ones kept: a catch-up to them is still possible
    assert proto.catch_up.take((1000, 1)) == [("b", Announce("b", 1000, 1, DIGEST, 1000, 50, 2))]


def test_a_flood_of_skips_of_many_phases_keeps_at_most_max_pending_per_sender():
    proto = started()

    for i in range(2000):
        proto.handle(ControlIn("b", Skip("b", 1 + i // 2, i % 2)), 0.1)
        assert proto.exchange.pending_skips() <= BASE.max_pending
    assert proto.stats.bad_control == 0


def _play_rounds(proto: PeerProtocol, first: int, count: int) -> float:
    """Play ``count`` ordinary rounds from ``first`` (both neighbours deliver); their CPU time."""
    start = time.process_time()
    for round_ in range(first, first + count):
        for step in range(BASE.gossip_steps):
            proto.handle(ModelReady(round_, step, DIGEST, 1000, 50), 0.1)
            for peer in ("b", "c"):
                proto.handle(announce(round_, step, sender=peer), 0.1)
                proto.handle(FetchDone(peer, round_, step, True), 0.1)
            proto.handle(Mixed(round_, step), 0.1)
    return time.process_time() - start


def test_the_work_per_phase_does_not_grow_with_what_a_neighbour_buffered():
    proto = started(catchup_lag=10**7)  # no catch-up: the buffers only fill
    early = min(_play_rounds(proto, r, 50) for r in (0, 50, 100))

    for i in range(20_000):  # 20,000 announcements and skips of phases far ahead
        proto.handle(announce(500_000 + i, 0), 0.1)
        proto.handle(ControlIn("b", Skip("b", 500_000 + i, 1)), 0.1)
    late = min(_play_rounds(proto, r, 50) for r in (150, 200, 250))

    assert proto.round == 300
    assert late < 4 * early + 0.01


def test_an_announcement_of_an_illegal_step_is_ignored_and_counted():
    proto = started()

    for step in (3, 2**40):
        assert proto.handle(announce(1, step), 0.1) == []
    skip_actions = proto.handle(ControlIn("b", Skip("b", 1, 2)), 0.1)  # skips stop at gossip_steps - 1

    assert skip_actions == []
    assert proto.stats.bad_control == 3
    assert proto.catch_up.pending() == 0 and proto.exchange.pending_skips() == 0


def test_a_final_model_announced_as_step_gossip_steps_is_still_taken():
    proto = started()

    actions = proto.handle(announce(5, BASE.gossip_steps), 0.1)

    assert [(f.round, f.step) for f in actions if isinstance(f, Fetch)] == [(5, 2)]
    assert proto.stats.bad_control == 0


# ---------------------------------------------------------------- announced size
def test_an_announcement_larger_than_the_model_limit_is_rejected_not_fetched():
    proto = started()
    proto.limit_model_bytes(2000)

    actions = proto.handle(announce(0, 0, size=2**63 - 1), 0.1)

    assert actions == [Reject("b", 0, "oversized-announcement",
                              f"announced {2**63 - 1} bytes, limit 2000")]
    assert proto.catch_up.pending() == 0 and "b" not in proto.exchange.announced


def test_an_announcement_within_the_model_limit_is_fetched():
    proto = started()
    proto.limit_model_bytes(2000)

    actions = proto.handle(announce(0, 0, size=2000), 0.1)

    assert [(f.peer, f.size) for f in actions if isinstance(f, Fetch)] == [("b", 2000)]


def _executor(float16: bool) -> tuple[PeerExecutor, SwarmNode]:
    trainer = FakeTrainer(3, seed=0)
    fed = fake_federation(3, seed=0)
    node = SwarmNode("a", trainer.train, fed.sites[0].train, trainer.model_id, trainer.initial_weights(0),
                     {"b": 2, "c": 2}, float16=float16)
    proto = PeerProtocol("a", ["b", "c"], BASE)
    return PeerExecutor(node, proto, FakeSeam(), evaluate=lambda w: 1.0, train_seed=lambda r: r), node


def test_the_executor_limits_fetches_to_its_own_model_size_from_the_start():
    for float16 in (False, True):
        ex, node = _executor(float16)
        ex.start()
        own = len(node.encode_model(0))
        limit = ex.protocol.max_model_bytes

        assert limit == fetch_limit(own, float16)
        assert limit >= (2 * own if float16 else own)  # a float32 neighbour still fits
        assert limit < 3 * own + 8192


def test_the_executor_counts_an_oversized_announcement_as_a_rejection():
    ex, node = _executor(False)
    ex.start()

    ex.control("b", encode_control(Announce("b", 0, 0, DIGEST, 2**63 - 1, 50, 2)))

    assert node.stats.rejected["oversized-announcement"] == 1
    assert ex.seam.fetches == []


# ---------------------------------------------------------------- members
def test_a_progress_record_of_a_non_member_origin_is_dropped_and_counted():
    proto = started(is_member={"a", "b", "c", "x"}.__contains__)

    forwards = proto.handle(progress("intruder"), 0.1)
    decision = proto.handle(ControlIn("b", StopDecision("intruder", 1, 3, "converged", 5)), 0.1)
    kept = proto.handle(progress("x"), 0.1)

    assert forwards == [] and decision == []
    assert proto.stats.bad_control == 2
    assert proto.members() == ["a", "b", "c", "x"]
    assert [a.peer for a in kept if isinstance(a, SendControl)] == ["c"]  # a member's is forwarded
    assert proto.stop_round is None


def test_members_tracked_are_capped_and_long_ids_refused_in_an_open_swarm():
    proto = started(max_members=10)

    for i in range(1000):
        proto.handle(progress(f"m{i}"), 0.1)
    proto.handle(progress("y" * (MAX_MEMBER_ID_BYTES + 1)), 0.1)

    assert len(proto.members()) <= 10 + 3  # the cap, plus this peer and its neighbours
    assert proto.stats.bad_control == 1000 - 10 + 1
    assert len(proto.membership._seen) <= 10


def test_a_member_admitted_earlier_keeps_being_heard_after_the_cap_is_reached():
    proto = started(max_members=2)
    proto.handle(progress("b", via="b"), 0.1)
    proto.handle(progress("x"), 0.1)
    proto.handle(progress("z"), 0.1)  # over the cap

    proto.handle(progress("x", seq=2), 0.2)
    proto.handle(TimerFired(), 0.3)

    assert proto.stats.bad_control == 1
    assert proto.membership.member_round("x", -1) == 0
    assert "z" not in proto.members()
