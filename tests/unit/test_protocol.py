"""Unit tests of the sans-I/O ``PeerProtocol``: one peer "a" with neighbours "b" and "c",
driven by hand (no event loop, no sleeps, no simulation): events in, actions out, time as
an argument."""

from __future__ import annotations

import dataclasses
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gossip.bitset import pack_bits
from gossip.control import Announce, Progress, Skip, StopDecision, Summary, encode_control
from swarm.convergence import ConvergenceConfig
from swarm.protocol import (
    Adopt,
    Checkpoint,
    ControlIn,
    Exit,
    Fetch,
    FetchDone,
    Mix,
    Mixed,
    ModelReady,
    Offer,
    PeerProtocol,
    ProtocolConfig,
    SendControl,
    Stop,
    TimerFired,
    Train,
)
from swarm.round_counter import DeadlineConfig

NEIGHBOURS = ("b", "c")
EPS = 0.01  # time between two hand-fed events


BASE = ProtocolConfig(
    gossip_steps=1,
    deadline=DeadlineConfig(minimum=0.1, initial=1.0, maximum=5.0),
    suspect_after=10.0,
    heartbeat=2.0,
    fetch_timeout=0.5,
    fetch_retries=1,
    convergence=ConvergenceConfig(max_rounds=10, window=2, min_rounds=2),
    corroboration=1,  # the mechanics; corroboration (the default 2) is tested in test_corroboration.py
)


def config(**overrides) -> ProtocolConfig:
    return dataclasses.replace(BASE, **overrides)


def started(cfg: ProtocolConfig | None = None, start_round: int = 0,
            now: float = 0.0) -> PeerProtocol:
    proto = PeerProtocol("a", list(NEIGHBOURS), cfg or config(), start_round=start_round)
    proto.start(now)
    return proto


def in_touch() -> PeerProtocol:
    """A peer started ``suspect_after`` ago (nearly): long enough to speak for the swarm."""
    return started(now=-BASE.suspect_after + 0.05)


def test_a_peer_just_started_or_back_does_not_decide_until_every_record_had_time_to_arrive():
    for proto, decides in ((started(), False), (in_touch(), True)):
        proto.handle(progress("b", 1, round_=0, converged=True, via="b"), 0.05)
        proto.handle(progress("c", 1, round_=0, converged=True, via="c"), 0.05)
        now = 0.1
        actions = []
        for r in range(3):
            more, now = run_round(proto, r, now, **STEADY)
            actions += more
        assert bool(sent(actions, StopDecision)) is decides


def digest(sender: str, round_: int, step: int) -> str:
    """A distinct, valid digest (32 lowercase hex chars) per model."""
    return f"{ord(sender):08x}{round_:012x}{step:012x}"


def announce(sender: str, round_: int, step: int = 0, link: str | None = None) -> ControlIn:
    msg = Announce(sender, round_, step, digest(sender, round_, step), 1000, 50, 2)
    return ControlIn(link or sender, msg)


def ready(round_: int, step: int = 0, loss: float | None = 0.7) -> ModelReady:
    return ModelReady(round_, step, digest("a", round_, step), 1000, 50, loss)


def done(sender: str, round_: int, step: int = 0, ok: bool = True) -> FetchDone:
    return FetchDone(sender, round_, step, ok, "" if ok else "bad digest")


def progress(origin: str, seq: int, round_: int = 0, converged: bool = False, ttl: int = 5,
             via: str = "b") -> ControlIn:
    streak = 1 if converged else 0
    return ControlIn(via, Progress(origin, seq, round_, 0.5, 0.5, 0.01, converged, streak, ttl))


def stop_decision(stop_round: int, seq: int = 1, origin: str = "x", ttl: int = 5,
                  via: str = "b") -> ControlIn:
    return ControlIn(via, StopDecision(origin, seq, stop_round, "converged", ttl))


def corroborate(proto: PeerProtocol, now: float = 0.01) -> None:
    """Signed converged votes of the neighbours b and c (alive: their messages come over their
    links) and of w, x, y and z (b's summary says they are alive: liveness travels in
    summaries), every other member this peer knows: its view then backs a stop decision."""
    for neighbour in ("b", "c"):
        proto.handle(progress(neighbour, 1, converged=True, via=neighbour), now)
    voters = ("w", "x", "y", "z")
    for origin in voters:
        proto.handle(progress(origin, 1, converged=True, via="b"), now)
    alive = sum(1 << proto.membership.index(m) for m in voters)
    proto.handle(ControlIn("b", Summary("b", proto.membership.view.epoch, (pack_bits(alive),), pack_bits(alive))),
                 now)


def of(actions, cls) -> list:
    return [a for a in actions if isinstance(a, cls)]


def sent(actions, msg_cls) -> list[SendControl]:
    return [a for a in actions if isinstance(a, SendControl) and isinstance(a.msg, msg_cls)]


def run_round(proto: PeerProtocol, round_: int, now: float, senders=NEIGHBOURS,
              metric: float | None = None, distance: float | None = None) -> tuple[list, float]:
    """Play one round (gossip_steps=1), every sender announcing; return actions and time."""
    actions = proto.handle(ready(round_), now)
    for sender in senders:
        now += EPS
        actions += proto.handle(announce(sender, round_), now)
    for sender in senders:
        now += EPS
        actions += proto.handle(done(sender, round_), now)
    now += EPS
    actions += proto.handle(Mixed(round_, 0, distance, metric), now)
    return actions, now + EPS


# ---------------------------------------------------------------- a normal round
def test_start_trains_round_zero_and_says_hello_to_every_neighbour():
    proto = PeerProtocol("a", list(NEIGHBOURS), config())

    actions = proto.start(0.0)

    assert actions[0] == Train(0)
    assert sorted(a.peer for a in sent(actions, Progress)) == ["b", "c"]


def test_own_model_ready_is_announced_to_every_neighbour():
    proto = started()

    actions = proto.handle(ready(0), 0.1)

    assert [a.peer for a in sent(actions, Announce)] == ["b", "c"]
    msg = sent(actions, Announce)[0].msg
    assert (msg.sender, msg.round, msg.step, msg.digest) == ("a", 0, 0, digest("a", 0, 0))
    assert not of(actions, Mix)


def test_each_neighbour_announce_for_the_current_phase_is_fetched_once():
    proto = started()
    proto.handle(ready(0), 0.1)

    from_b = proto.handle(announce("b", 0), 0.2)
    from_c = proto.handle(announce("c", 0), 0.3)

    assert from_b == [Fetch("b", 0, 0, digest("b", 0, 0), 1000, 0.5, False)]
    assert from_c == [Fetch("c", 0, 0, digest("c", 0, 0), 1000, 0.5, False)]


def test_models_from_both_neighbours_are_mixed_in_the_last_step():
    proto = started()
    proto.handle(ready(0), 0.1)
    proto.handle(announce("b", 0), 0.2)
    proto.handle(announce("c", 0), 0.3)

    first = proto.handle(done("b", 0), 0.4)
    second = proto.handle(done("c", 0), 0.5)

    assert first == []
    assert second == [Mix(0, 0, ("b", "c"), True)]


def test_mixed_completes_the_round_checkpoints_reports_progress_and_trains_the_next():
    proto = started()
    actions, _ = run_round(proto, 0, 0.1)

    after_mix = actions[actions.index(Mix(0, 0, ("b", "c"), True)) + 1:]

    assert after_mix[0] == Checkpoint(0)
    assert sorted(a.peer for a in sent(after_mix, Progress)) == ["b", "c"]
    assert after_mix[-1] == Train(1)
    assert proto.phase == (1, 0)
    assert proto.stats.rounds_completed == 1


def test_gossip_steps_two_offers_the_mixed_model_before_the_last_step():
    proto = started(config(gossip_steps=2))
    proto.handle(ready(0, 0), 0.1)
    proto.handle(announce("b", 0, 0), 0.2)
    proto.handle(announce("c", 0, 0), 0.3)
    proto.handle(done("b", 0, 0), 0.4)
    mix = proto.handle(done("c", 0, 0), 0.5)

    actions = proto.handle(Mixed(0, 0), 0.6)

    assert mix == [Mix(0, 0, ("b", "c"), False)]
    assert actions == [Offer(0, 1)]
    assert proto.phase == (0, 1)


# ---------------------------------------------------------------- duplicates, stale, out of order
def test_duplicate_announce_for_the_current_phase_fetches_only_once():
    proto = started()
    proto.handle(ready(0), 0.1)

    first = proto.handle(announce("b", 0), 0.2)
    again = proto.handle(announce("b", 0), 0.3)

    assert len(of(first, Fetch)) == 1
    assert again == []


def test_announce_replayed_after_its_fetch_completed_is_not_fetched_again():
    proto = started()
    proto.handle(ready(0), 0.1)
    proto.handle(announce("b", 0), 0.2)
    proto.handle(done("b", 0), 0.3)

    replay = proto.handle(announce("b", 0), 0.4)

    assert replay == []


def test_announce_for_an_older_phase_is_counted_stale_and_not_fetched():
    proto = started()
    run_round(proto, 0, 0.1)
    before = proto.phase

    actions = proto.handle(announce("b", 0), 1.0)

    assert not of(actions, Fetch)
    assert proto.stats.stale == 1
    assert proto.phase == before == (1, 0)
    # b is still in round 0 and may have lost our announcement of it: it gets it again
    assert [(a.peer, a.msg.round, a.msg.step) for a in sent(actions, Announce)] == [("b", 0, 0)]


def test_announce_for_the_next_step_is_buffered_until_the_peer_gets_there():
    proto = started(config(gossip_steps=2))
    proto.handle(ready(0, 0), 0.1)

    early = proto.handle(announce("b", 0, 1), 0.2)
    proto.handle(announce("b", 0, 0), 0.3)
    proto.handle(announce("c", 0, 0), 0.4)
    proto.handle(done("b", 0, 0), 0.5)
    proto.handle(done("c", 0, 0), 0.6)
    entering = proto.handle(Mixed(0, 0), 0.7)

    assert early == []
    assert Fetch("b", 0, 1, digest("b", 0, 1), 1000, 0.5, False) in entering
    assert proto.phase == (0, 1)


def test_buffered_announce_survives_a_later_announce_from_the_same_sender():
    proto = started(config(gossip_steps=2))
    proto.handle(ready(0, 0), 0.1)
    proto.handle(announce("b", 0, 1), 0.2)  # b timed out waiting for us and ran ahead
    proto.handle(announce("b", 1, 0), 0.3)
    proto.handle(announce("c", 0, 0), 0.4)
    proto.handle(done("c", 0, 0), 0.5)
    proto.handle(TimerFired(), 1.2)  # deadline 1.1: mix with c alone

    entering = proto.handle(Mixed(0, 0), 1.3)

    assert Fetch("b", 0, 1, digest("b", 0, 1), 1000, 0.5, False) in entering


def test_fetch_done_for_a_phase_the_peer_has_left_changes_nothing():
    proto = started()
    run_round(proto, 0, 0.1)
    proto.handle(ready(1), 1.0)
    proto.handle(announce("b", 1), 1.1)

    stale = proto.handle(done("c", 0), 1.2)
    fresh = proto.handle(done("b", 1), 1.3)

    assert stale == []
    assert fresh == []  # c's old model does not count for round 1
    assert proto.phase == (1, 0)


def test_fetch_done_from_a_peer_never_asked_does_not_count_toward_the_quorum():
    proto = started()
    proto.handle(ready(0), 0.1)
    proto.handle(announce("b", 0), 0.2)

    unasked = proto.handle(done("c", 0), 0.3)
    asked = proto.handle(done("b", 0), 0.4)

    assert unasked == []
    assert asked == []  # still waiting for c's real model
    assert proto.phase == (0, 0)


def test_failed_fetch_is_retried_then_given_up_and_the_sender_left_out():
    proto = started()
    proto.handle(ready(0), 0.1)
    proto.handle(announce("b", 0), 0.2)
    proto.handle(announce("c", 0), 0.3)
    proto.handle(done("b", 0), 0.4)

    retry = proto.handle(done("c", 0, ok=False), 0.5)
    give_up = proto.handle(done("c", 0, ok=False), 0.6)

    assert retry == [Fetch("c", 0, 0, digest("c", 0, 0), 1000, 0.5, False)]
    assert give_up == [Mix(0, 0, ("b",), True)]
    assert proto.stats.fetch_failures == 2


# ---------------------------------------------------------------- quorum, deadline, liveness
def _b_fetched_c_silent() -> PeerProtocol:
    proto = started()
    proto.handle(ready(0), 0.1)  # deadline: 0.1 + initial 1.0
    proto.handle(announce("b", 0), 0.2)
    proto.handle(done("b", 0), 0.3)
    return proto


def test_nothing_mixes_before_the_deadline_while_a_live_neighbour_is_missing():
    proto = _b_fetched_c_silent()

    actions = proto.handle(TimerFired(), proto.next_timer() - 0.05)

    assert not of(actions, Mix)
    assert proto.stats.phases_timed_out == 0


def test_deadline_mixes_with_the_models_at_hand_and_counts_a_timeout():
    proto = _b_fetched_c_silent()
    before = proto.phase
    halfway = proto.next_timer()
    reannounced = proto.handle(TimerFired(), halfway)
    deadline = proto.next_timer()

    actions = proto.handle(TimerFired(), deadline + 0.01)

    # halfway to the deadline the announcement is repeated to the silent neighbour only
    assert halfway == pytest.approx(0.6)
    assert [a.peer for a in sent(reannounced, Announce)] == ["c"]
    assert not of(reannounced, Mix)
    assert deadline == pytest.approx(1.1)
    assert of(actions, Mix) == [Mix(0, 0, ("b",), True)]
    assert proto.stats.phases_timed_out == 1
    assert proto.phase >= before


def test_silent_neighbour_is_suspected_and_no_longer_waited_for():
    proto = started()
    proto.handle(progress("b", 1), 9.0)  # b keeps talking, c says nothing from 0.0 on

    proto.handle(TimerFired(), 10.5)
    proto.handle(ready(0), 10.6)
    proto.handle(announce("b", 0), 10.7)
    actions = proto.handle(done("b", 0), 10.8)

    assert proto.stats.suspicions == 1
    assert proto.live_neighbours(10.8) == ["b"]
    assert actions == [Mix(0, 0, ("b",), True)]
    assert proto.stats.phases_timed_out == 0


def test_a_neighbour_silent_toward_this_peer_but_sighted_by_others_is_not_suspected_until_it_crashes():
    """With a fanout below the degree a live neighbour may send this peer nothing for longer
    than suspect_after; c's summaries still show it alive. Once it crashes (c sighted it last at
    20 s) it is given up between suspect_after and one heartbeat more after that sighting."""
    proto = started()
    b_bit = 1 << proto.membership.index("b")

    def summary_from_c(now: float, sighted: bool) -> None:
        proto.membership.view.advance(now)  # c's epochs run with this peer's
        epoch = proto.membership.view.epoch
        proto.handle(ControlIn("c", Summary("c", epoch, (pack_bits(b_bit if sighted else 0),), pack_bits(0))), now)

    now = 0.5
    while now <= 20.0:  # b says nothing to a, c sees it every heartbeat
        summary_from_c(now, sighted=True)
        proto.handle(TimerFired(), now + 0.1)
        assert proto.suspected_neighbours(now + 0.1) == [], now
        now += BASE.heartbeat
    last_sighting = now - BASE.heartbeat
    while now <= last_sighting + BASE.suspect_after + BASE.heartbeat + 0.5:
        summary_from_c(now, sighted=False)  # b crashed: nobody sights it any more
        proto.handle(TimerFired(), now)
        suspected = proto.suspected_neighbours(now)
        if now <= last_sighting + BASE.suspect_after:
            assert suspected == [], now
        now += 0.5
    assert proto.suspected_neighbours(now) == ["b"] and proto.stats.suspicions == 1
    assert proto.live_neighbours(now) == ["c"]


def test_message_from_a_suspected_neighbour_clears_the_suspicion_and_it_counts_again():
    proto = started()
    proto.handle(progress("b", 1), 9.0)
    proto.handle(TimerFired(), 10.5)
    proto.handle(ready(0), 10.6)
    proto.handle(announce("b", 0), 10.7)
    proto.handle(done("b", 0), 10.8)
    proto.handle(Mixed(0, 0), 10.9)

    proto.handle(progress("c", 1, via="c"), 11.0)
    proto.handle(ready(1), 11.1)
    proto.handle(announce("b", 1), 11.2)
    actions = proto.handle(done("b", 1), 11.3)

    assert proto.stats.rejoins_seen == 1
    assert proto.live_neighbours(11.3) == ["b", "c"]
    assert actions == []  # waits for c again


# ---------------------------------------------------------------- cut off from every neighbour
def _cut_off(isolation_wait: float = 60.0) -> PeerProtocol:
    """Peer "a" whose neighbours both went silent at 0.0; its round-0 model is ready at 10.6."""
    proto = started(config(isolation_wait=isolation_wait))
    proto.handle(TimerFired(), 10.5)  # both suspected now
    proto.handle(ready(0), 10.6)
    return proto


def test_a_peer_cut_off_from_every_neighbour_holds_its_round_instead_of_training_alone():
    proto = _cut_off(isolation_wait=60.0)
    hold_ends = 10.6 + 60.0  # from when its model was ready and nobody could deliver theirs
    actions, now = [], 10.6
    while (now := proto.next_timer()) < hold_ends:  # every timer it asks for until then
        assert now > 10.6  # never a timer in the past (no busy loop)
        actions += proto.handle(TimerFired(), now)

    assert not of(actions, Mix) and proto.round == 0
    assert proto.stats.holds == 1
    assert now == pytest.approx(hold_ends)
    # then it trains on alone rather than waiting forever for a swarm that may be gone
    assert of(proto.handle(TimerFired(), now), Mix) == [Mix(0, 0, (), True)]


def test_without_a_hold_a_cut_off_peer_mixes_alone_at_once():
    """The positive control of the test above: ``isolation_wait=0`` is the old behaviour."""
    proto = started(config(isolation_wait=0.0))
    proto.handle(TimerFired(), 10.5)

    assert of(proto.handle(ready(0), 10.6), Mix) == [Mix(0, 0, (), True)]


def test_a_neighbour_heard_again_ends_the_hold_and_the_peer_catches_up_to_it():
    proto = _cut_off()
    proto.handle(TimerFired(), 20.0)

    back = proto.handle(progress("b", 1, round_=4), 30.0)

    # it tells b where it is at once and gives the phase a fresh deadline, not the stale one
    assert [(a.peer, a.msg.round) for a in sent(back, Announce)] == [("b", 0)]
    assert not of(proto.handle(TimerFired(), 30.0 + EPS), Mix)
    # b is rounds ahead: its announcement starts a catch-up, not a round alone
    fetch = of(proto.handle(announce("b", 4), 30.1), Fetch)
    assert [(f.peer, f.round, f.catch_up) for f in fetch] == [("b", 4, True)]
    adopted = proto.handle(done("b", 4), 30.2)
    assert of(adopted, Adopt) == [Adopt("b", 4, BASE.stale_weight)]
    assert proto.round == 5


def _ahead_of_both(now: float = 0.0) -> tuple[PeerProtocol, float]:
    """Peer "a" in round 2 (it timed out on rounds 0 and 1) while b and c were last seen in round 0."""
    proto = started(config(isolation_wait=60.0))
    proto.handle(announce("b", 0), now)
    proto.handle(announce("c", 0), now)
    for r in range(2):
        proto.handle(ready(r), now)
        now = proto.next_timer()
        while not of(proto.handle(TimerFired(), now), Mix):
            now = proto.next_timer()
        proto.handle(Mixed(r, 0), now)
    return proto, now


def test_a_peer_two_rounds_ahead_of_every_neighbour_waits_for_them_instead_of_running_on():
    proto, now = _ahead_of_both()
    assert proto.round == 2 and proto.live_neighbours(now) == ["b", "c"]

    actions = proto.handle(ready(2), now + EPS)
    actions += proto.handle(TimerFired(), now + 5.0)  # well past any phase deadline

    assert not of(actions, Mix) and proto.stats.holds == 1
    # b gets there: its model is fetched and mixed as usual
    proto.handle(announce("b", 2), now + 6.0)
    assert of(proto.handle(done("b", 2), now + 6.1), Mix) == [Mix(2, 0, ("b",), True)]


def test_a_held_peer_goes_on_when_every_neighbour_says_to_skip_the_phase():
    proto, now = _ahead_of_both()
    proto.handle(ready(2), now + EPS)

    proto.handle(ControlIn("b", Skip("b", 2, 0)), now + 1.0)
    actions = proto.handle(ControlIn("c", Skip("c", 2, 0)), now + 1.1)

    assert of(actions, Mix) == [Mix(2, 0, (), True)]


def test_a_cut_off_peer_does_not_decide_for_the_swarm():
    cfg = config(isolation_wait=60.0, convergence=ConvergenceConfig(max_rounds=10, window=1, min_rounds=0,
                                                                    distance_tol=10.0))
    proto = started(cfg)
    now, seq = 0.0, 0
    for r in range(3):  # it converges; b and c are around but have not
        for peer in NEIGHBOURS:
            seq += 1
            proto.handle(progress(peer, seq, round_=r, via=peer), now)
        _, now = run_round(proto, r, now, metric=0.5, distance=0.0)
    assert proto.convergence.voted() and proto.stop_round is None

    # then both go silent: no one left to wait for, but it is cut off, not the whole swarm
    # (a member stops counting as alive one to two liveness epochs of suspect_after after
    # its last sign of life: swarm.swarm_view)
    actions = proto.handle(TimerFired(), now + 20.5)
    actions += proto.handle(TimerFired(), now + 22.5)

    assert proto.alive_members(now + 22.5) == set()
    assert not sent(actions, StopDecision) and proto.stop_round is None


def test_skip_for_the_current_phase_removes_the_neighbour_from_the_quorum():
    proto = _b_fetched_c_silent()

    actions = proto.handle(ControlIn("c", Skip("c", 0, 0)), 0.4)

    assert actions == [Mix(0, 0, ("b",), True)]
    assert proto.stats.phases_timed_out == 0


def test_skip_for_a_future_phase_applies_when_the_peer_gets_there():
    proto = started()
    proto.handle(ControlIn("c", Skip("c", 1, 0)), 0.05)
    run_round(proto, 0, 0.1)
    proto.handle(ready(1), 1.0)
    proto.handle(announce("b", 1), 1.1)

    actions = proto.handle(done("b", 1), 1.2)

    assert actions == [Mix(1, 0, ("b",), True)]


def test_skips_for_several_future_phases_from_one_neighbour_all_apply():
    proto = started()
    proto.handle(ready(0), 0.1)
    proto.handle(announce("b", 0), 0.2)
    proto.handle(done("b", 0), 0.3)
    for round_ in (0, 1, 2):  # c caught up from round 0 to round 2 (what Adopt sends)
        proto.handle(ControlIn("c", Skip("c", round_, 0)), 0.4)
    proto.handle(Mixed(0, 0), 0.5)
    proto.handle(ready(1), 0.6)
    proto.handle(announce("b", 1), 0.7)

    actions = proto.handle(done("b", 1), 0.8)

    assert actions == [Mix(1, 0, ("b",), True)]


# ---------------------------------------------------------------- catch-up
def test_announce_catchup_lag_rounds_ahead_starts_a_catch_up_fetch():
    proto = started()

    actions = proto.handle(announce("b", 2), 0.1)

    assert actions == [Fetch("b", 2, 0, digest("b", 2, 0), 1000, 0.5, True)]
    assert proto.phase == (0, 0)


def test_announce_less_than_catchup_lag_ahead_is_only_buffered():
    proto = started()

    actions = proto.handle(announce("b", 1), 0.1)

    assert actions == []


def test_catch_up_adopts_skips_the_missed_phases_and_trains_the_next_round():
    proto = started()
    proto.handle(announce("b", 2), 0.1)
    before = proto.phase

    actions = proto.handle(done("b", 2), 0.2)

    assert actions[0] == Adopt("b", 2, 0.5)
    skips = {(a.peer, a.msg) for a in sent(actions, Skip)}
    assert skips == {(p, Skip("a", r, 0)) for p in NEIGHBOURS for r in (0, 1, 2)}
    assert Checkpoint(2) in actions
    assert actions[-1] == Train(3)
    assert proto.phase == (3, 0) > before
    assert proto.stats.catch_ups == 1


def test_failed_catch_up_fetch_lets_a_later_announce_start_another():
    proto = started()
    proto.handle(announce("b", 2), 0.1)

    failed = proto.handle(done("b", 2, ok=False), 0.2)
    again = proto.handle(announce("b", 3), 0.3)

    assert failed == []
    assert proto.phase == (0, 0)
    assert again == [Fetch("b", 3, 0, digest("b", 3, 0), 1000, 0.5, True)]


def test_timed_out_catch_up_fetch_lets_a_later_announce_start_another():
    proto = started()
    proto.handle(announce("b", 2), 0.1)

    timeout = proto.handle(TimerFired(), 0.1 + 2.0)
    again = proto.handle(announce("b", 2), 2.2)

    assert not of(timeout, Adopt)
    assert proto.stats.fetch_failures == 1
    assert again == [Fetch("b", 2, 0, digest("b", 2, 0), 1000, 0.5, True)]


def test_catch_up_fetch_arriving_after_the_peer_closed_the_gap_is_not_adopted():
    proto = started()
    proto.handle(announce("b", 2), 0.05)  # catch-up towards round 2 in flight
    run_round(proto, 0, 0.1)  # meanwhile round 0 completes: now only 1 round behind

    actions = proto.handle(done("b", 2), 1.0)

    assert actions == []
    assert proto.phase == (1, 0)
    assert proto.stats.catch_ups == 0


def test_catch_up_never_takes_the_peer_past_the_last_round():
    proto = started()  # max_rounds=10: rounds 0..9

    actions = proto.handle(announce("b", 1000), 0.1)  # a buggy or reset neighbour
    for fetch in of(actions, Fetch):
        actions += proto.handle(done(fetch.peer, fetch.round, fetch.step), 0.2)

    assert proto.round <= 9
    assert all(a.round <= 9 for a in of(actions, Adopt) + of(actions, Stop))
    assert len(sent(actions, Skip)) <= 10 * len(NEIGHBOURS)


# ---------------------------------------------------------------- progress flooding
def test_a_record_of_a_new_top_round_is_pushed_on_unchanged_to_the_other_neighbours():
    proto = started()

    actions = proto.handle(progress("x", 1, ttl=5, via="b"), 0.1)

    # not flooded (ttl untouched): pushed once because x now holds one of the top rounds
    assert actions == [SendControl("c", Progress("x", 1, 0, 0.5, 0.5, 0.01, False, 0, 5))]


def test_a_record_that_changes_no_aggregate_is_not_passed_on():
    proto = started()
    proto.handle(progress("x", 1, round_=5, via="b"), 0.1)
    proto.handle(progress("y", 1, round_=5, via="b"), 0.1)  # the top two rounds: x and y

    actions = proto.handle(progress("z", 1, round_=2, via="b"), 0.2)

    assert actions == []


def test_replayed_progress_is_not_forwarded_again():
    proto = started()
    proto.handle(progress("x", 1, via="b"), 0.1)

    actions = proto.handle(progress("x", 1, via="c"), 0.2)

    assert actions == []


def test_progress_with_a_lower_seq_is_not_forwarded():
    proto = started()
    proto.handle(progress("x", 2, round_=3, via="b"), 0.1)

    actions = proto.handle(progress("x", 1, round_=1), 0.2)

    assert actions == []
    assert proto.membership.member_round("x", -1) == 3


def test_a_neighbours_own_record_is_its_vote_and_a_sign_of_life():
    proto = started()

    actions = proto.handle(progress("b", 1, round_=4, ttl=0, via="b"), 0.1)

    assert [a.peer for a in actions if isinstance(a, SendControl)] == ["c"]  # a new top round
    assert proto.convergence.votes["b"].round == 4
    assert "b" in proto.alive_members(0.1)


def test_heartbeat_timer_sends_a_progress_record_to_every_neighbour():
    proto = started()
    assert proto.next_timer() == 2.0

    actions = proto.handle(TimerFired(), 2.0)

    assert sorted(a.peer for a in sent(actions, Progress)) == ["b", "c"]
    assert proto.next_timer() == 4.0


def test_progress_of_a_restarted_peer_is_not_dropped_as_a_duplicate():
    receiver = PeerProtocol("b", ["a", "c"], config())
    receiver.start(0.0)

    def deliver(actions, now):
        for action in sent(actions, Progress):
            if action.peer == "b":
                receiver.handle(ControlIn("a", action.msg), now)

    before_crash = PeerProtocol("a", ["b", "c"], config())
    deliver(before_crash.start(0.0), 0.0)
    for now in (2.0, 4.0, 6.0):  # a few heartbeats (seq 2, 3, 4) before the crash
        deliver(before_crash.handle(TimerFired(), now), now)
    restarted = PeerProtocol("a", ["b", "c"], config(), start_round=5)

    deliver(restarted.start(8.0), 8.0)  # must not reuse seq 1..4

    assert receiver.convergence.votes["a"].round == 5


# ---------------------------------------------------------------- stop decision
def test_stop_decision_is_forwarded_to_the_other_neighbours():
    proto = started()

    corroborate(proto)  # x has voted converged: its decision is backed
    actions = proto.handle(stop_decision(2, ttl=5, via="b"), 0.05)

    assert actions == [SendControl("c", StopDecision("x", 1, 2, "converged", 4))]
    assert proto.stop_round == 2


def test_peer_stops_after_completing_the_stop_round_and_not_before():
    proto = started()
    corroborate(proto)  # x has voted converged: its decision is backed
    proto.handle(stop_decision(2), 0.05)

    round0, now = run_round(proto, 0, 0.1)
    round1, now = run_round(proto, 1, now)
    round2, now = run_round(proto, 2, now)

    assert not of(round0 + round1, Stop)
    assert round1[-1] == Train(2)
    assert round2[-2:] == [Stop(2, "converged"), Offer(2, 1)]  # and the final model is offered
    assert Checkpoint(2) in round2 and not of(round2, Train)
    assert proto.stopped_at == 2


def test_stop_decision_beyond_max_rounds_is_ignored_and_counted_bad():
    proto = started()

    proto.handle(stop_decision(10), 0.05)  # max_rounds=10: last valid stop round is 9
    actions, _ = run_round(proto, 0, 0.1)

    assert proto.stop_round is None
    assert proto.stats.bad_control == 1
    assert actions[-1] == Train(1)


def _stopped_at_round_2() -> tuple[PeerProtocol, float]:
    proto = started()
    corroborate(proto)  # x has voted converged: its decision is backed
    proto.handle(stop_decision(2), 0.05)
    now = 0.1
    for round_ in range(3):
        _, now = run_round(proto, round_, now)
    assert proto.stopped_at == 2
    return proto, now


def test_higher_stop_decision_after_stopping_resumes_until_the_new_round():
    proto, now = _stopped_at_round_2()

    resume = proto.handle(stop_decision(4, seq=2), now)
    round3, now = run_round(proto, 3, now + EPS)
    round4, now = run_round(proto, 4, now)

    assert resume[-1] == Train(3)
    assert proto.stopped_at == 4
    assert round3[-1] == Train(4)
    assert round4[-2:] == [Stop(4, "converged"), Offer(4, 1)]


def test_resumed_peer_does_not_exit_at_the_old_linger_time():
    proto, now = _stopped_at_round_2()
    old_exit = now - EPS + proto.config.linger
    proto.handle(stop_decision(4, seq=2), now)

    actions = proto.handle(TimerFired(), old_exit + 0.1)

    assert not of(actions, Exit)
    assert not proto.exited


def test_a_stopped_peer_whose_neighbours_all_reached_the_stop_round_leaves_after_two_heartbeats():
    proto, now = _stopped_at_round_2()
    stopped = now - EPS  # the Mixed that stopped it
    soon = stopped + 2 * proto.config.heartbeat
    assert soon < stopped + proto.config.linger

    early = proto.handle(TimerFired(), soon - 0.1)
    late = proto.handle(TimerFired(), soon)

    assert not of(early, Exit)
    assert late == [Exit(2, "converged")]
    assert proto.exited and proto.next_timer() is None


def test_a_stopped_peer_lingers_for_a_suspected_neighbour_that_has_not_reached_the_stop_round():
    # d went silent long ago (suspected from the start); b and c finish round 2 with "a"
    proto = PeerProtocol("a", ["b", "c", "d"], config(), start_round=0)
    proto.start(-BASE.suspect_after - 0.05)
    corroborate(proto)  # x has voted converged: its decision is backed
    proto.handle(stop_decision(2), 0.05)
    now = 0.1
    for round_ in range(3):
        _, now = run_round(proto, round_, now)
    stopped = now - EPS
    assert proto.stopped_at == 2 and proto.suspected_neighbours(now) == ["d"]

    early = proto.handle(TimerFired(), stopped + proto.config.linger - 0.1)
    late = proto.handle(TimerFired(), stopped + proto.config.linger)

    assert not of(early, Exit)  # d may be back any moment to catch up to the final model
    assert late == [Exit(2, "converged")]


def test_exited_peer_ignores_every_later_event():
    proto, now = _stopped_at_round_2()
    proto.handle(TimerFired(), now + proto.config.linger)

    actions = proto.handle(stop_decision(4, seq=2), now + proto.config.linger + 0.1)

    assert proto.exited
    assert actions == []
    assert proto.stopped_at == 2


def test_exit_waits_for_a_live_neighbour_that_has_not_reached_the_stop_round():
    proto = started()
    corroborate(proto)  # x has voted converged: its decision is backed
    proto.handle(stop_decision(2), 0.05)
    _, now = run_round(proto, 0, 0.1)
    _, now = run_round(proto, 1, now)
    proto.handle(ControlIn("b", Skip("b", 2, 0)), now)  # b last seen announcing round 1
    _, now = run_round(proto, 2, now, senders=("c",))
    linger_over = now + proto.config.linger

    waiting = proto.handle(TimerFired(), linger_over)
    proto.handle(progress("b", 2, round_=2, via="b"), linger_over + 0.1)
    leaving = proto.handle(TimerFired(), proto.next_timer())

    assert proto.stopped_at == 2
    assert not of(waiting, Exit)
    assert of(leaving, Exit) == [Exit(2, "converged")]


def test_stop_decision_for_a_round_already_completed_is_answered_with_a_counter_proposal():
    proto = started()
    now = 0.1
    for round_ in range(3):
        _, now = run_round(proto, round_, now)
    corroborate(proto, now)

    actions = proto.handle(stop_decision(1, via="b"), now)

    counter = [a for a in sent(actions, StopDecision) if a.msg.origin == "a"]
    assert sorted(a.peer for a in counter) == ["b", "c"]
    assert counter[0].msg.stop_round == proto.round == 3
    assert proto.stop_round == 3


def test_peer_stops_after_round_max_rounds_minus_one():
    proto = started(start_round=8)

    round8, now = run_round(proto, 8, 0.1)
    round9, _ = run_round(proto, 9, now)

    assert round8[-1] == Train(9)
    assert round9[-2:] == [Stop(9, "max-rounds"), Offer(9, 1)]


# ---------------------------------------------------------------- bad control messages
def test_message_from_a_non_neighbour_is_ignored_and_counted_bad():
    proto = started()
    proto.handle(ready(0), 0.1)

    actions = proto.handle(announce("z", 0), 0.2)

    assert actions == []
    assert proto.stats.bad_control == 1


@pytest.mark.parametrize("msg", [
    Announce("c", 0, 0, digest("c", 0, 0), 1000, 50, 2),
    Skip("c", 0, 0),
], ids=["announce", "skip"])
def test_message_whose_sender_is_not_the_link_peer_is_ignored_and_counted_bad(msg):
    proto = _b_fetched_c_silent()

    actions = proto.handle(ControlIn("b", msg), 0.4)

    assert actions == []
    assert proto.stats.bad_control == 1
    assert proto.phase == (0, 0)


# ---------------------------------------------------------------- convergence decision
STEADY = {"metric": 0.5, "distance": 0.01}  # flat loss and small distance: converged after round 2


def test_converged_peer_decides_to_stop_when_every_alive_member_voted_converged():
    proto = in_touch()
    proto.handle(progress("b", 1, round_=0, converged=True, via="b"), 0.05)
    proto.handle(progress("c", 1, round_=0, converged=True, via="c"), 0.05)
    early, now = run_round(proto, 0, 0.1, **STEADY)
    more, now = run_round(proto, 1, now, **STEADY)

    actions, _ = run_round(proto, 2, now, **STEADY)

    decisions = sent(actions, StopDecision)
    assert not sent(early + more, StopDecision)
    assert sorted(a.peer for a in decisions) == ["b", "c"]
    assert decisions[0].msg.origin == "a"
    assert decisions[0].msg.stop_round >= 2
    assert proto.stop_round == decisions[0].msg.stop_round


def test_alive_member_not_yet_converged_blocks_the_stop_decision():
    proto = in_touch()
    proto.handle(progress("b", 1, converged=True, via="b"), 0.05)
    proto.handle(progress("c", 1, converged=False, via="c"), 0.05)
    now = 0.1
    for round_ in range(3):
        actions, now = run_round(proto, round_, now, **STEADY)
        assert not sent(actions, StopDecision)

    late = proto.handle(progress("c", 2, round_=2, converged=True, via="c"), now)

    assert sorted(a.peer for a in sent(late, StopDecision)) == ["b", "c"]


def test_member_silent_for_two_liveness_epochs_is_not_waited_for():
    proto = started()
    proto.handle(progress("x", 1, converged=False, via="b"), 0.05)  # x never says more
    now = 0.1
    for round_ in range(2):
        _, now = run_round(proto, round_, now, **STEADY)
    now = 2 * BASE.suspect_after + 0.6  # x stops counting within two epochs of suspect_after
    proto.handle(progress("b", 1, round_=2, converged=True, via="b"), now)
    proto.handle(progress("c", 1, round_=2, converged=True, via="c"), now)

    actions, now = run_round(proto, 2, now + EPS, **STEADY)

    assert "x" not in proto.alive_members(now)
    assert sorted(a.peer for a in sent(actions, StopDecision)) == ["b", "c"]


def test_own_stop_decision_echoed_back_is_not_forwarded_again():
    proto = in_touch()
    proto.handle(progress("b", 1, converged=True, via="b"), 0.05)
    proto.handle(progress("c", 1, converged=True, via="c"), 0.05)
    now = 0.1
    for round_ in range(3):
        actions, now = run_round(proto, round_, now, **STEADY)
    own = sent(actions, StopDecision)[0].msg
    assert own.origin == "a"

    echo = proto.handle(ControlIn("b", StopDecision("a", own.seq, own.stop_round, own.reason,
                                                    own.ttl - 1)), now)

    assert echo == []


# ---------------------------------------------------------------- property: random events
PROPERTY = settings(max_examples=100, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
FLOATS = [None, 0.0, 0.01, 0.5, 2.0, -1.0, math.inf, math.nan]
LINKS = ["b", "c", "z"]
REQUESTS = (Fetch, Mix, Train, Offer)  # actions the driver answers with an event
KINDS = ["announce", "announce", "skip", "progress", "stop", "fetch-done", "mixed", "ready",
         "timer", "reply", "reply", "reply"]


def draw_event(data, proto: PeerProtocol, outstanding: list):
    """Any well-typed event, or a plausible reply to an action the peer asked for."""
    def pick(values, label):
        return data.draw(st.sampled_from(values), label=label)

    def rnd():
        ahead = data.draw(st.sampled_from([0, 0, 1, 2, None]), label="ahead")
        if ahead is None:
            return data.draw(st.integers(0, 12), label="round")
        return proto.round + ahead

    def stp():
        return proto.phase[1] if data.draw(st.booleans(), label="near") else data.draw(
            st.integers(0, 2), label="step")

    kind = pick(KINDS if outstanding else KINDS[:-3], "kind")
    if kind in ("announce", "skip"):
        sender = pick(LINKS, "sender")
        link = sender if data.draw(st.booleans(), label="honest") else pick(LINKS, "link")
        if kind == "announce":
            return announce(sender, rnd(), stp(), link=link)
        return ControlIn(link, Skip(sender, rnd(), stp()))
    if kind == "progress":
        return progress(pick(["a", "b", "c", "x"], "origin"),
                        data.draw(st.integers(0, 6), label="seq"),
                        rnd(), data.draw(st.booleans(), label="converged"),
                        data.draw(st.integers(0, 3), label="ttl"), pick(LINKS, "link"))
    if kind == "stop":
        return stop_decision(rnd(), data.draw(st.integers(0, 4), label="seq"),
                             pick(["a", "x", "y"], "origin"), via=pick(LINKS, "link"))
    if kind == "fetch-done":
        return FetchDone(pick(LINKS, "sender"), rnd(), stp(), data.draw(st.booleans(), label="ok"))
    if kind == "mixed":
        return Mixed(rnd(), stp(), pick(FLOATS, "distance"), pick(FLOATS, "metric"))
    if kind == "ready":
        r, t = rnd(), stp()
        return ModelReady(r, t, digest("a", r, t), 10, 1, pick(FLOATS, "loss"))
    if kind == "timer":
        return TimerFired()
    action = pick(outstanding, "reply-to")
    if isinstance(action, Fetch):
        ok = data.draw(st.booleans(), label="ok")
        return FetchDone(action.peer, action.round, action.step, ok)
    if isinstance(action, Mix):
        return Mixed(action.round, action.step, pick(FLOATS, "distance"), pick(FLOATS, "metric"))
    if isinstance(action, (Train, Offer)):
        step = action.step if isinstance(action, Offer) else 0
        return ModelReady(action.round, step, digest("a", action.round, step), 10, 1, 0.5)
    return TimerFired()


@PROPERTY
@given(data=st.data(), gossip_steps=st.integers(1, 2))
def test_random_events_never_raise_nor_move_the_round_backwards(data, gossip_steps):
    proto = PeerProtocol("a", list(NEIGHBOURS), config(gossip_steps=gossip_steps))
    now = 0.0
    outstanding = [a for a in proto.start(now) if isinstance(a, REQUESTS)]
    for _ in range(data.draw(st.integers(1, 50), label="events")):
        timer = proto.next_timer()
        jump = data.draw(st.sampled_from([0.0, 0.05, 0.5, 3.0, 11.0, None]), label="dt")
        now = max(now, timer) if jump is None and timer is not None else now + (jump or 0.0)
        event = draw_event(data, proto, outstanding)
        phase = proto.phase

        actions = proto.handle(event, now)

        assert proto.phase >= phase
        assert proto.round >= phase[0]
        for action in actions:
            if isinstance(action, SendControl):
                encode_control(action.msg)  # everything it sends passes the receiver's checks
        outstanding = (outstanding + [a for a in actions if isinstance(a, REQUESTS)])[-8:]


def test_a_stopped_peer_announces_its_final_model_so_laggards_can_catch_up():
    proto = started(config(convergence=dataclasses.replace(BASE.convergence, max_rounds=1)))
    actions, _ = run_round(proto, 0, 0.1)
    assert Offer(0, 1) in actions
    final = proto.handle(ModelReady(0, 1, digest("a", 0, 1), 1000, 10), 1.0)
    assert sorted(a.peer for a in sent(final, Announce)) == ["b", "c"]
    assert all((a.msg.round, a.msg.step) == (0, 1) for a in sent(final, Announce))


def test_a_laggard_mixes_a_lone_final_model_and_a_running_one_with_its_own_share():
    cfg = config(catchup_lag=2)
    for step in (1, 0):  # gossip_steps=1: step 1 is the final offer (corroboration 1: no wait)
        proto = started(cfg)
        proto.handle(announce("b", 5, step), 0.1)
        actions = proto.handle(done("b", 5, step), 0.2)
        assert of(actions, Adopt) == [Adopt("b", 5, cfg.stale_weight)], step


def test_a_peer_restarted_after_the_last_round_stops_without_training():
    proto = PeerProtocol("a", ["b", "c"], config(convergence=dataclasses.replace(BASE.convergence, max_rounds=3)),
                         start_round=3)
    actions = proto.start(0.0)
    assert not of(actions, Train)
    assert of(actions, Stop) == [Stop(2, "max-rounds")]
    assert proto.round == 2 and proto.stopped_at == 2


def test_a_stopped_peer_points_a_neighbour_that_came_back_far_behind_at_its_final_model():
    proto = started(config(convergence=dataclasses.replace(BASE.convergence, max_rounds=4)))
    now = 0.1
    for round_ in range(4):
        _, now = run_round(proto, round_, now)
    before = proto.handle(progress("b", 1, round_=1, via="b"), now)  # stopped, final not offered yet
    proto.handle(ModelReady(3, 1, digest("a", 3, 1), 1000, 10), now + 0.1)

    behind = proto.handle(progress("b", 2, round_=1, via="b"), now + 0.2)
    close = proto.handle(progress("b", 3, round_=2, via="b"), now + 0.3)
    hearsay = proto.handle(progress("x", 1, round_=0, via="c"), now + 0.4)
    proto.handle(progress("c", 7, round_=0, via="b"), now + 0.5)  # c's record came round via b
    direct_after = proto.handle(progress("c", 7, round_=0, via="c"), now + 0.6)

    assert proto.stopped_at == 3
    assert not sent(before, Announce)
    assert [(a.peer, a.msg.round, a.msg.step) for a in sent(behind, Announce)] == [("b", 3, 1)]
    assert not sent(close, Announce)  # less than catchup_lag behind: it gets there itself
    assert not sent(hearsay, Announce)  # only a neighbour's own record counts
    assert [a.peer for a in sent(direct_after, Announce)] == ["c"]  # even if seen before


# ---------------------------------------------------------------- recovering lost messages
OWN_0 = Announce("a", 0, 0, digest("a", 0, 0), 1000, 50, 2)


def test_a_neighbour_announcing_again_gets_our_announcement_again_but_not_at_once():
    proto = started()  # retry interval before any transfer: 0.5 (half the initial deadline)
    proto.handle(ready(0), 0.1)  # announced to b and c at 0.1
    proto.handle(announce("b", 0), 0.2)

    too_soon = proto.handle(announce("b", 0), 0.3)  # ours may still be on its way
    later = proto.handle(announce("b", 0), 0.7)  # b is still asking: it lost ours
    echo = proto.handle(announce("b", 0), 0.8)  # just answered: no second answer

    assert too_soon == []
    assert later == [SendControl("b", OWN_0)]
    assert echo == []


def test_a_silent_neighbour_is_asked_again_with_backoff_until_the_deadline():
    proto = started(config(deadline=DeadlineConfig(minimum=0.1, initial=3.0, maximum=5.0)))
    proto.handle(ready(0), 0.0)  # deadline 3.0, retry interval 0.5 (fetch_timeout caps it)
    proto.handle(announce("b", 0), 0.1)
    proto.handle(done("b", 0), 0.2)

    times, repeats = [], []
    while not proto.stats.phases_timed_out:
        now = proto.next_timer()
        actions = proto.handle(TimerFired(), now)
        if sent(actions, Announce):
            times.append(now)
            repeats += [a.peer for a in sent(actions, Announce)]

    assert times == pytest.approx([0.5, 1.5])  # then 3.5: past the deadline
    assert repeats == ["c", "c"]


def test_fetch_try_timeout_follows_transfer_times_not_neighbour_lateness():
    proto = started()
    now = 0.1
    for round_ in range(3):  # neighbours announce 0.4 after us, transfers take 0.02
        proto.handle(ready(round_), now)
        for sender in NEIGHBOURS:
            proto.handle(announce(sender, round_), now + 0.4)
            proto.handle(done(sender, round_), now + 0.42)
        proto.handle(Mixed(round_, 0), now + 0.45)
        now += 1.0
    proto.handle(ready(3), now)

    (fetch,) = of(proto.handle(announce("b", 3), now + 0.4), Fetch)

    assert proto.deadline.current() > 0.4  # the phase deadline absorbs the lateness
    assert fetch.timeout == pytest.approx(0.1)  # a try: the transfer time, floored at minimum
    (retry,) = of(proto.handle(done("b", 3, ok=False), now + 0.41), Fetch)
    assert retry.timeout == pytest.approx(0.2)  # a retry may take twice as long


def _timed_out_in_round_0(announced: tuple[str, ...]) -> PeerProtocol:
    """Ready at 0.1 (deadline 1.1); only ``announced`` neighbours deliver; on to round 1."""
    proto = started()
    proto.handle(ready(0), 0.1)
    for sender in announced:
        proto.handle(announce(sender, 0), 0.2)
        proto.handle(done(sender, 0), 0.3)
    while not proto.stats.phases_timed_out:
        proto.handle(TimerFired(), proto.next_timer())
    proto.handle(Mixed(0, 0), 1.25)
    assert proto.round == 1
    return proto


def test_late_announcements_after_most_neighbours_timed_out_teach_the_deadline_the_real_delay():
    proto = _timed_out_in_round_0(announced=())
    before = proto.deadline.history()

    proto.handle(announce("c", 0), 2.6)  # c's model of round 0 was ready after all
    proto.handle(announce("c", 0), 3.6)  # counted once
    proto.handle(announce("b", 0), 2.7)

    assert proto.deadline.history() == [*before, pytest.approx(2.5), pytest.approx(2.6)]


def test_a_late_announcement_after_a_timeout_on_a_minority_teaches_nothing():
    proto = _timed_out_in_round_0(announced=("b",))  # only c (one of two) was late
    before = proto.deadline.history()

    proto.handle(announce("c", 0), 2.6)

    assert proto.deadline.history() == before  # a slow neighbour does not set the pace


def test_a_peer_that_caught_up_answers_an_announcement_of_a_skipped_phase_with_a_skip():
    proto = started()
    proto.handle(announce("b", 2), 0.1)
    proto.handle(done("b", 2), 0.2)  # caught up: skips rounds 0-2, now in round 3

    actions = proto.handle(announce("c", 1), 1.0)  # c is waiting for our round 1

    assert sent(actions, Skip) == [SendControl("c", Skip("a", 1, 0))]
