"""Unit tests of ``Hold``: waiting in a phase nobody can deliver, at most ``isolation_wait``."""

from __future__ import annotations

import math

from swarm.hold import Hold
from swarm.protocol_types import ProtocolStats

NEIGHBOURS = ("b", "c")


def test_no_hold_while_some_neighbour_can_deliver():
    hold = Hold(30.0, ProtocolStats())
    assert not hold.check({"b"}, NEIGHBOURS, set(), 1.0)
    assert not hold.held and hold.until() == math.inf


def test_no_hold_when_every_neighbour_said_to_go_on_without_it():
    stats = ProtocolStats()
    hold = Hold(30.0, stats)
    assert not hold.check(set(), NEIGHBOURS, {"b", "c"}, 1.0)
    assert stats.holds == 0


def test_a_hold_starts_once_is_counted_once_and_runs_out_after_isolation_wait():
    stats = ProtocolStats()
    hold = Hold(30.0, stats)
    assert hold.check(set(), NEIGHBOURS, {"b"}, 1.0)
    assert hold.check(set(), NEIGHBOURS, {"b"}, 20.0)
    assert hold.until() == 31.0 and stats.holds == 1
    assert not hold.check(set(), NEIGHBOURS, {"b"}, 31.0)  # ran out: go on alone
    assert hold.held  # still the same hold: not counted again
    assert stats.holds == 1


def test_a_neighbour_able_to_deliver_again_ends_the_hold_and_a_later_one_counts_anew():
    stats = ProtocolStats()
    hold = Hold(30.0, stats)
    hold.check(set(), NEIGHBOURS, set(), 1.0)
    assert not hold.check({"c"}, NEIGHBOURS, set(), 2.0)
    assert not hold.held
    hold.check(set(), NEIGHBOURS, set(), 3.0)
    assert stats.holds == 2 and hold.until() == 33.0


def test_release_ends_the_hold():
    hold = Hold(30.0, ProtocolStats())
    hold.check(set(), NEIGHBOURS, set(), 1.0)
    hold.release()
    assert not hold.held and hold.until() == math.inf
