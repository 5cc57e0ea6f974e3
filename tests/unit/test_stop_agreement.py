"""Unit tests of ``StopAgreement``: deciding, adopting the highest proposal, counter-proposing,
resuming, and when a stopped peer may exit."""

from __future__ import annotations

from gossip.control import Announce, Progress, StopDecision
from swarm.convergence import ConvergenceConfig, ConvergenceTracker
from swarm.membership import Membership
from swarm.neighbourhood import Neighbourhood
from swarm.protocol_types import Exit, ProtocolConfig, ProtocolStats, Reject, SendControl
from swarm.stop_agreement import StopAgreement

CONFIG = ProtocolConfig(suspect_after=10.0, heartbeat=2.0, linger=5.0, catchup_lag=2, progress_ttl=4,
                        convergence=ConvergenceConfig(max_rounds=10, window=2, min_rounds=2))


def agreement(now: float = 0.0) -> StopAgreement:
    links = Neighbourhood("a", ["b", "c"], CONFIG.suspect_after)
    links.start(now)
    convergence = ConvergenceTracker(CONFIG.convergence, "a")
    membership = Membership(links, CONFIG, convergence)
    membership.start(now, 0)
    return StopAgreement(links, membership, convergence, CONFIG, ProtocolStats())


def progress(origin: str, seq: int, round_: int, converged: bool = True) -> Progress:
    return Progress(origin, seq, round_, None, None, None, converged, 3, 4)


def converge(stop: StopAgreement, rounds: int = 3) -> None:
    for r in range(rounds):
        stop.convergence.record_round(r, 1.0, 0.0, float(r))


def test_the_last_round_stops_with_max_rounds():
    stop = agreement()
    assert not stop.reached(7, 1.0)
    assert stop.reached(9, 1.0)
    assert (stop.stop_round, stop.stop_reason, stop.stopped_at, stop.exit_at) == (9, "max-rounds", 9, 6.0)


def test_decides_once_in_touch_and_every_live_member_converged():
    stop = agreement(now=0.0)
    converge(stop)
    for origin in ("b", "c"):
        stop.membership.on_progress(origin, progress(origin, 1, 2), 9.0)
    assert stop.maybe_decide(3, 9.5) == []  # started less than suspect_after ago
    actions = stop.maybe_decide(3, 10.0)
    decision = StopDecision("a", 1, stop.stop_round, "converged: 3 live members voted converged", 4)
    assert actions == [SendControl("b", decision), SendControl("c", decision)]
    assert stop.stop_round >= 3 and stop.repeat() == actions
    assert stop.membership.flood("stop:a", 1, decision, "b") is None  # its own, come back


def test_no_decision_while_a_live_member_has_not_converged():
    stop = agreement()
    converge(stop)
    stop.membership.on_progress("b", progress("b", 1, 2), 9.0)
    stop.membership.on_progress("c", progress("c", 1, 2, converged=False), 9.0)
    assert stop.maybe_decide(3, 10.0) == [] and stop.stop_round is None


def corroborate(stop: StopAgreement, round_: int = 4, now: float = 1.0) -> None:
    """Signed converged votes from both other members, at ``round_`` (supports stops near it)."""
    for origin in ("b", "c"):
        stop.membership.on_progress(origin, progress(origin, 1, round_), now)


def test_the_highest_proposal_wins_and_duplicates_are_ignored():
    stop = agreement()
    corroborate(stop)
    actions, resume = stop.on_decision("b", StopDecision("x", 1, 5, "r5", 4), 2, 1.0)
    assert resume is None and [a.peer for a in actions] == ["c"] and stop.stop_round == 5
    stop.on_decision("b", StopDecision("y", 1, 4, "r4", 4), 2, 1.0)
    assert stop.stop_round == 5
    assert stop.on_decision("c", StopDecision("x", 1, 5, "r5", 4), 2, 1.0) == ([], None)


def test_a_decision_waits_until_the_peers_own_signed_view_corroborates_it():
    stop = agreement()
    stop.membership.on_progress("b", progress("b", 1, 4), 1.0)
    stop.membership.on_progress("c", progress("c", 1, 4, converged=False), 1.0)
    actions, _ = stop.on_decision("b", StopDecision("b", 1, 5, "b says so", 4), 3, 1.0)
    assert [a.peer for a in actions] == ["c"]  # forwarded (it is b's own, signed word) ...
    assert stop.stop_round is None  # ... but c has never voted converged: not acted on
    assert stop.settle(3, 2.0) == ([], None) and stop.stop_round is None
    stop.membership.on_progress("c", progress("c", 2, 5), 3.0)
    assert stop.settle(3, 3.0) == ([], None) and stop.stop_round == 5


def test_one_member_alone_cannot_corroborate_a_stop():
    stop = agreement()
    stop.membership.on_progress("b", progress("b", 1, 4), 1.0)  # only b has voted, and a has not
    stop.on_decision("b", StopDecision("b", 1, 4, "b says so", 4), 3, 1.0)
    assert stop.stop_round is None and not stop.corroborated(1.0)


def test_votes_taken_back_do_not_corroborate_a_stop():
    # b voted converged once and took it back; c votes converged; a has not voted: a majority
    # voted converged at least once, but only one of three members does now
    stop = agreement()
    stop.membership.on_progress("b", progress("b", 1, 4), 1.0)
    stop.membership.on_progress("b", progress("b", 2, 4, converged=False), 1.5)
    stop.membership.on_progress("c", progress("c", 1, 4), 1.5)
    stop.on_decision("c", StopDecision("c", 1, 5, "c says so", 4), 3, 2.0)
    assert stop.stop_round is None and not stop.corroborated(2.0)
    stop.membership.on_progress("b", progress("b", 3, 5), 3.0)  # b converged again: 2 of 3, one may be missing
    assert stop.settle(3, 3.0) == ([], None) and stop.stop_round == 5


def test_a_stop_round_beyond_the_signed_progress_is_refused_and_not_marked_seen():
    stop = agreement()
    corroborate(stop, round_=3)  # supported round 3: the bound is 3 + stop_margin 2 + catchup_lag 2
    actions, _ = stop.on_decision("b", StopDecision("x", 1, 8, "far", 4), 3, 1.0)
    assert [a.reason for a in actions if isinstance(a, Reject)] == ["unsupported-stop"]
    assert stop.stop_round is None and stop.membership.fresh("stop:x", 1)
    actions, _ = stop.on_decision("b", StopDecision("x", 1, 7, "near", 4), 3, 1.0)
    assert stop.stop_round == 7


def test_a_peer_past_the_proposed_round_counter_proposes_its_own():
    stop = agreement()
    corroborate(stop, round_=6)
    actions, _ = stop.on_decision("b", StopDecision("x", 1, 3, "why", 4), 6, 1.0)
    assert stop.stop_round == 6 and stop.decision is not None
    assert stop.decision.origin == "a" and stop.decision.stop_round == 6
    assert [a.peer for a in actions] == ["c", "b", "c"]  # forward, then own proposal to all


def test_a_later_decision_resumes_a_stopped_peer_without_new_votes():
    stop = agreement()
    stop.reached(9, 1.0)
    stop.stop_round, stop.stopped_at = 4, 4  # stopped early at round 4, a stop agreed before
    stop.membership.saw_round("b", 6)
    stop.membership.saw_round("c", 6)
    _, resume = stop.on_decision("b", StopDecision("x", 1, 6, "later", 4), 4, 1.0)
    assert resume == 4 and stop.stopped_at is None and stop.exit_at is None and stop.stop_round == 6


def test_a_stop_round_past_max_rounds_is_bad_control():
    stop = agreement()
    corroborate(stop, round_=9)
    stop.on_decision("b", StopDecision("x", 1, 10, "far", 4), 2, 1.0)
    assert stop.stats.bad_control == 1 and stop.stop_round is None


def test_exit_after_two_heartbeats_when_every_neighbour_reached_the_stop_round():
    stop = agreement()
    stop.reached(9, 1.0)
    for peer in ("b", "c"):
        stop.membership.saw_round(peer, 9)
    assert stop.on_timer(4.9) is None
    assert stop.on_timer(5.0) == Exit(9, "max-rounds") and stop.exited


def test_linger_is_extended_by_a_heartbeat_while_a_live_neighbour_is_on_its_way():
    stop = agreement()
    stop.reached(9, 1.0)
    stop.membership.saw_round("b", 9)
    stop.links.heard("c", 5.0)
    assert stop.on_timer(6.0) is None and stop.exit_at == 8.0
    stop.membership.saw_round("c", 9)
    assert stop.on_timer(8.0) == Exit(9, "max-rounds")


def test_a_neighbour_back_far_behind_is_pointed_at_the_final_model():
    stop = agreement()
    final = Announce("a", 9, 1, "0" * 32, 10, 5, 2)
    assert stop.offer_final(final) == [SendControl("b", final), SendControl("c", final)]
    assert stop.repoint("b", progress("b", 1, 7)) == [SendControl("b", final)]
    assert stop.repoint("b", progress("b", 1, 8)) == []  # close enough to arrive by itself
    assert stop.repoint("c", progress("b", 1, 2)) == []  # relayed: not the neighbour itself
