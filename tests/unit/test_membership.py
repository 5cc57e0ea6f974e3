"""Unit tests of ``Membership``: flooded progress records, dedup by (origin, seq), members'
rounds, who is alive and whether this peer is in touch."""

from __future__ import annotations

import math

from gossip.control import Progress, StopDecision
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
    assert [a.peer for a in actions] == ["b", "c"]
    msg = actions[0].msg
    assert (msg.origin, msg.seq, msg.round, msg.loss, msg.distance, msg.ttl) == ("a", 1, 4, None, 0.0, 4)
    assert part.next_heartbeat == 7.0


def test_a_new_record_is_forwarded_to_the_other_neighbours_and_a_duplicate_is_dropped():
    part = membership()
    fwd = part.on_progress("b", record("x", 5, round_=3), 1.0)
    assert fwd is not None and [(a.peer, a.msg.ttl) for a in fwd] == [("c", 3)]
    assert part.on_progress("c", record("x", 5, round_=3), 1.1) is None
    assert part.on_progress("c", record("x", 4, round_=9), 1.1) is None  # older seq
    assert part.member_round("x", -1) == 3 and part.known() == {"x"}


def test_own_records_coming_back_are_ignored():
    part = membership()
    assert part.on_progress("b", record("a", 99), 1.0) is None
    assert part.known() == set()


def test_a_record_whose_ttl_ran_out_is_recorded_but_not_forwarded():
    part = membership()
    assert part.on_progress("b", record("x", 1, round_=2, ttl=0), 1.0) == []
    assert part.member_round("x", -1) == 2


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


def test_a_member_is_alive_while_its_records_are_recent():
    part = membership()
    part.on_progress("b", record("x", 1), 1.0)
    part.on_progress("b", record("y", 1), 4.0)
    assert part.alive(11.0) == {"x", "y"}
    assert part.alive(12.0) == {"y"}


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
