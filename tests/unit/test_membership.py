"""Unit tests of ``Membership``: progress records to neighbours, aggregates (summaries, pushed
votes and top rounds), dedup by (origin, seq), members' rounds, who is alive and whether this
peer is in touch."""

from __future__ import annotations

import math

from gossip.bitset import pack_bits
from gossip.control import Progress, StopDecision, Summary
from swarm.convergence import ConvergenceConfig, ConvergenceTracker
from swarm.membership import Membership
from swarm.neighbourhood import Neighbourhood
from swarm.protocol_types import ProtocolConfig, SendControl

CONFIG = ProtocolConfig(suspect_after=10.0, heartbeat=2.0, progress_ttl=4,
                        convergence=ConvergenceConfig(max_rounds=10, window=2, min_rounds=2))


def membership(now: float = 0.0, seq_floor: int = 0) -> Membership:
    links = Neighbourhood("a", ["b", "c"], CONFIG.suspect_after)
    links.start(now)
    part = Membership(links, CONFIG, ConvergenceTracker(CONFIG.convergence, "a"))
    part.start(now, seq_floor)
    return part


def record(origin: str, seq: int, round_: int = 0, ttl: int = 4) -> Progress:
    return Progress(origin, seq, round_, None, None, None, False, 0, ttl)


def test_sequence_numbers_start_above_the_floor_and_the_clock_in_ms():
    assert membership(now=0.0, seq_floor=7).next_seq() == 8
    assert membership(now=3.0, seq_floor=7).next_seq() == 3001


def test_own_record_goes_to_every_neighbour_and_resets_the_heartbeat():
    part = membership()
    part.loss, part.distance = math.nan, -1.0
    actions = part.record(4, 5.0)
    records = [a for a in actions if isinstance(a.msg, Progress)]
    assert [a.peer for a in records] == ["b", "c"]
    msg = records[0].msg
    # never flooded: ttl 0
    assert (msg.origin, msg.seq, msg.round, msg.loss, msg.distance, msg.ttl) == ("a", 1, 4, None, 0.0, 0)
    assert [a.peer for a in actions if isinstance(a.msg, Summary)] == ["b", "c"]
    assert part.next_heartbeat == 7.0


def test_a_new_top_round_is_pushed_to_the_other_neighbours_and_a_duplicate_is_dropped():
    part = membership()
    fwd = part.on_progress("b", record("x", 5, round_=3), 1.0)
    assert fwd is not None and [(a.peer, a.msg.ttl) for a in fwd] == [("c", 4)]  # ttl untouched
    assert part.on_progress("c", record("x", 5, round_=3), 1.1) is None
    assert part.on_progress("c", record("x", 4, round_=9), 1.1) is None  # older seq
    assert part.member_round("x", -1) == 3 and part.known() == {"x"}


def test_own_records_coming_back_are_ignored():
    part = membership()
    assert part.on_progress("b", record("a", 99), 1.0) is None
    assert part.known() == set()


def test_a_record_below_the_top_rounds_is_recorded_but_not_passed_on():
    part = membership()
    part.on_progress("b", record("x", 1, round_=5), 1.0)
    part.on_progress("b", record("y", 1, round_=5), 1.0)
    assert part.on_progress("b", record("b", 1, round_=2, ttl=0), 1.0) == []
    assert part.member_round("b", -1) == 2


def test_votes_travel_as_signed_records_the_neighbour_lacks():
    part = membership()
    voted = record("x", 1, round_=2)
    voted = Progress(*[getattr(voted, f) for f in ("origin", "seq", "round", "loss", "metric", "distance")],
                     True, 3, 0)
    part.on_progress("b", voted, 1.0)
    part.tick(1.05)  # x's record also holds a top round: that goes to both, once
    # c says it holds no vote: x's signed record goes to c (and not back to b, which sent it)
    part.on_summary("c", Summary("c", 0, (pack_bits(0),), pack_bits(0)), 1.1)
    part.on_summary("b", Summary("b", 0, (pack_bits(0),), pack_bits(1 << part.index("x"))), 1.1)
    pushed = [(a.peer, a.msg) for a in part.tick(1.2) if isinstance(a.msg, Progress) and a.msg.converged]
    assert pushed == [("c", voted)]
    assert part.view.counted(part.index("x"))


def test_a_neighbours_voted_bits_alone_count_for_nothing():
    part = membership()
    claimed = (1 << part.index("x")) | (1 << part.index("b"))
    part.on_summary("b", Summary("b", 0, (pack_bits(claimed),), pack_bits(claimed)), 1.0)
    assert part.alive_count(1.0) == 2  # it may keep members looking alive (a delay) ...
    part.convergence.record_round(0, 1.0, 0.0, 1.0)
    assert not part.all_converged(1.0)  # ... but no vote counts without its signed record


def test_stop_decisions_flood_under_their_own_key():
    part = membership()
    decision = StopDecision("x", 5, 3, "done", 4)
    assert part.flood("stop:x", 5, decision, "b") == [SendControl("c", StopDecision("x", 5, 3, "done", 3))]
    assert part.flood("stop:x", 5, decision, "c") is None
    assert part.on_progress("b", record("x", 5), 1.0) is not None  # progress of x is separate


def test_members_rounds_only_go_up():
    part = membership()
    part.saw_round("x", 5)
    part.saw_round("x", 2)
    assert part.member_round("x", -1) == 5 and part.member_round("y", -1) == -1


def test_a_member_is_alive_for_suspect_after_and_at_most_a_heartbeat_more():
    part = membership()  # epochs of a heartbeat (2 s) from 0; suspect_after 10 s: 6 epochs
    part.on_progress("x", record("x", 1), 1.0)  # their own records, over their links
    part.on_progress("y", record("y", 1), 4.0)
    bit = part.index
    assert part.alive(11.9) == (1 << bit("x")) | (1 << bit("y"))
    assert part.alive(12.0) == 1 << bit("y")  # x: 11 s after its record
    assert part.alive(16.0) == 0


def test_a_record_pushed_on_by_a_neighbour_is_no_sign_of_life():
    part = membership()
    part.on_progress("b", record("x", 1, round_=3), 1.0)
    assert part.alive(1.0) == 0 and part.member_round("x", -1) == 3


def test_a_summary_one_epoch_ahead_moves_this_peer_on_only_after_half_an_epoch():
    part = membership()  # epochs of 2 s
    ahead = Summary("b", 1, (pack_bits(1 << part.index("x")),), pack_bits(0))
    part.on_summary("b", ahead, 0.5)
    assert part.view.epoch == 0 and part.alive(0.5) == 1 << part.index("x")  # kept as now
    part.on_summary("b", ahead, 1.0)
    assert part.view.epoch == 1


def test_sightings_keep_their_epoch_however_late_they_arrive():
    part = membership()
    part.on_summary("b", Summary("b", 0, (pack_bits(0),), pack_bits(0)), 1.0)
    x = 1 << part.index("x")  # epochs 1, 2, 3, oldest first as XOR deltas: x in epoch 1 only
    old = Summary("b", 3, (pack_bits(x), pack_bits(x), pack_bits(0)), pack_bits(0))
    part.on_summary("b", old, 6.5)  # x seen in epoch 1 (2-4 s): counts until epoch 7 (14 s)
    assert part.alive(13.9) == 1 << part.index("x") and part.alive(14.0) == 0


def test_in_touch_after_suspect_after_and_not_again_until_as_long_after_a_cut():
    part = membership(now=0.0)
    assert not part.in_touch(9.0)
    part.links.heard("b", 9.0)
    assert part.in_touch(10.0)
    assert not part.in_touch(20.0)  # every neighbour silent: cut off
    part.links.heard("b", 21.0)
    assert not part.in_touch(21.0)
    assert part.in_touch(31.0)




def test_the_supported_round_needs_corroboration_distinct_members():
    import dataclasses

    m = membership()
    assert m.supported_round(3) == -1  # only this peer is known
    m.saw_round("h", 40)  # one member far ahead: alone, it supports nothing beyond us
    assert m.supported_round(3) == 3
    m.saw_round("b", 7)
    m.saw_round("b", 9)  # rounds only go up; b counts once
    assert m.supported_round(3) == 9
    m.saw_round("c", 12)
    assert m.supported_round(3) == 12  # second highest of 40, 12, 9, 3
    three = Membership(m.links, dataclasses.replace(CONFIG, corroboration=3), m.convergence)
    for member, round_ in (("h", 40), ("b", 9), ("c", 12), ("b", 10)):
        three.saw_round(member, round_)
    assert three.supported_round(3) == 10


def converged_vote(origin: str, seq: int, round_: int) -> Progress:
    """``record``'s progress record with a converged vote (streak 3)."""
    base = record(origin, seq, round_=round_)
    return Progress(*[getattr(base, f) for f in ("origin", "seq", "round", "loss", "metric", "distance")],
                    True, 3, 0)


def test_a_taken_back_vote_replaces_the_converged_one_and_is_pushed_where_it_still_counts():
    part = membership()
    voted = converged_vote("x", 1, 2)
    unvoted = Progress("x", 2, 3, None, None, None, False, 0, 0)
    part.on_progress("b", voted, 1.0)
    part.on_progress("b", unvoted, 1.5)
    assert not part.view.counted(part.index("x"))
    part.tick(1.6)
    # c still counts x's old converged vote: the newer take-back goes to it
    part.on_summary("c", Summary("c", 0, (pack_bits(0),), pack_bits(1 << part.index("x"))), 2.0)
    pushed = [(a.peer, a.msg) for a in part.tick(3.0) if isinstance(a.msg, Progress)]
    assert pushed == [("c", unvoted)]
    # an older record than the one held changes nothing
    assert part.on_progress("c", voted, 3.1) is None and not part.view.counted(part.index("x"))


def test_a_taken_back_vote_goes_on_at_once_to_the_neighbours_that_still_count_it():
    """Not at the next tick: a peer a few hops away would decide a stop on the stale vote
    meanwhile (measured: the demo's swarm stopped at round 16 on a vote taken back 7 s before)."""
    part = membership()
    voted, unvoted = converged_vote("x", 1, 2), Progress("x", 2, 2, None, None, None, False, 0, 0)
    part.on_progress("b", voted, 1.0)
    bit = pack_bits(1 << part.index("x"))
    part.on_summary("c", Summary("c", 0, (pack_bits(0),), bit), 1.1)  # c counts x's vote
    part.on_summary("d", Summary("d", 0, (pack_bits(0),), pack_bits(0)), 1.1)  # d does not
    out = part.on_progress("b", unvoted, 1.5)
    assert [(a.peer, a.msg) for a in out] == [("c", unvoted)]
    # a converged record is not pushed on receipt (it only delays nothing: the tick carries it)
    again = Progress("x", 3, 2, None, None, None, True, 1, 0)
    assert [a for a in part.on_progress("b", again, 1.6) if a.msg == again] == []


# ------------------------------------------------------------ fanout (issue 11)
WIDE = [f"n{i:02d}" for i in range(20)]


def wide(fanout: int = 5) -> Membership:
    """A peer of degree 20 sending to ``fanout`` neighbours per heartbeat or tick."""
    import dataclasses

    settings = dataclasses.replace(CONFIG, fanout=fanout)
    links = Neighbourhood("a", WIDE, settings.suspect_after)
    links.start(0.0)
    part = Membership(links, settings, ConvergenceTracker(settings.convergence, "a"))
    part.start(0.0, 0)
    return part


def test_at_degree_20_a_tick_sends_at_most_k_summaries_and_a_record_at_most_k_records():
    part = wide(fanout=5)
    for neighbour in WIDE:  # every neighbour lacks x's converged vote: pushes go only where summaries go
        part.on_summary(neighbour, Summary(neighbour, 0, (pack_bits(0),), pack_bits(0)), 0.5)
    part.on_progress("n00", converged_vote("x", 1, 2), 0.6)
    actions = part.record(3, 1.0)
    summaries = {a.peer for a in actions if isinstance(a.msg, Summary)}
    records = [a.peer for a in actions if isinstance(a.msg, Progress) and a.msg.origin == "a"]
    votes = {a.peer for a in actions if isinstance(a.msg, Progress) and a.msg.origin == "x"}
    assert len(summaries) == 5 and len(records) == 5
    assert votes == summaries  # each neighbour's summary said it lacks the vote


def test_every_neighbour_gets_the_summary_and_the_record_within_ceil_d_over_k_heartbeats():
    for fanout in (3, 5, 7):
        part = wide(fanout)
        rounds = math.ceil(len(WIDE) / fanout)
        summaries: set[str] = set()
        records: set[str] = set()
        for beat in range(rounds):
            actions = part.record(beat, 2.0 * beat)
            summaries |= {a.peer for a in actions if isinstance(a.msg, Summary)}
            records |= {a.peer for a in actions if isinstance(a.msg, Progress)}
        assert summaries == records == set(WIDE), fanout


def test_a_fanout_at_least_the_degree_reaches_every_neighbour_every_time():
    part = membership()  # degree 2, default fanout 5
    for now in (1.0, 3.0):
        actions = part.record(0, now)
        assert sorted(a.peer for a in actions if isinstance(a.msg, Summary)) == ["b", "c"]


def test_a_new_top_round_is_pushed_on_to_at_most_k_neighbours_in_rotation():
    part = wide(fanout=4)
    first = part.on_progress("n00", record("x", 1, round_=3), 1.0)
    second = part.on_progress("n01", record("y", 1, round_=4), 1.1)
    assert len(first) == 4 and len(second) == 4
    assert "n00" not in {a.peer for a in first} and "n01" not in {a.peer for a in second}
    assert not {a.peer for a in first} & {a.peer for a in second}  # the rotation moved on


def test_a_pushed_vote_is_not_pushed_again_before_the_neighbours_next_summary():
    part = membership()
    part.on_summary("c", Summary("c", 0, (pack_bits(0),), pack_bits(0)), 0.5)
    part.on_progress("b", converged_vote("x", 1, 2), 1.0)
    votes = lambda actions: [a.peer for a in actions if isinstance(a.msg, Progress) and a.msg.origin == "x"]
    assert votes(part.tick(1.1)) == ["c"]
    assert votes(part.tick(2.0)) == []
    # its next summary says it still lacks it (lost): pushed again
    part.on_summary("c", Summary("c", 0, (pack_bits(0),), pack_bits(0)), 2.5)
    assert votes(part.tick(3.0)) == ["c"]


def test_any_message_from_a_neighbour_is_a_sign_of_life_in_the_aggregates():
    part = membership()
    part.heard("b", 1.0)
    assert part.alive(1.0) == 1 << part.index("b")
    assert part.alive(12.0) == 0  # 11 s later (suspect_after 10 s, epochs of 2 s)


def test_a_summary_carries_the_completed_epochs_as_merged_and_the_current_one_as_own_sightings():
    sender = membership()
    links = Neighbourhood("d", ["a"], CONFIG.suspect_after)
    links.start(0.0)
    receiver = Membership(links, CONFIG, ConvergenceTracker(CONFIG.convergence, "d"))
    receiver.start(0.0, 0)
    bit = sender.index
    sender.heard("b", 0.5)  # sighted by the sender itself, epoch 0
    sender.on_summary("c", Summary("c", 0, (pack_bits(1 << bit("x")),), pack_bits(0)), 0.6)  # merged
    sender.heard("c", 2.5)  # epoch 1
    sender.on_summary("c", Summary("c", 1, (pack_bits(1 << bit("y")),), pack_bits(0)), 2.6)
    msg = sender.view.summary("a", 2.7, False)
    assert len(msg.live) == sender.view.window
    receiver.on_summary("a", msg, 2.7)
    # epoch 0 (completed) as merged: b and x; epoch 1 (current): the sender's own sightings only
    own = receiver.view.self_bit
    assert receiver.view.live[1] == own | (1 << bit("b")) | (1 << bit("x")) | (1 << bit("a"))
    assert receiver.view.live[0] == own | (1 << bit("c")) | (1 << bit("a"))
    assert not receiver.view.live[0] & (1 << bit("y"))  # y goes on once epoch 1 is over
