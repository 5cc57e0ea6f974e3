"""Unit tests of ``Neighbourhood``: the sorted links and who among them is suspected."""

from __future__ import annotations

from swarm.neighbourhood import Neighbourhood


def started(now: float = 0.0) -> Neighbourhood:
    links = Neighbourhood("a", ["c", "b"], suspect_after=10.0)
    links.start(now)
    return links


def test_neighbours_are_sorted_and_a_new_link_joins_once_but_never_the_peer_itself():
    links = started()
    links.add("a", 1.0)
    links.add("d", 1.0)
    links.add("b", 1.0)
    assert links.peers == ["b", "c", "d"]


def test_a_silent_neighbour_is_suspected_and_counted_once_until_it_speaks_again():
    links = started()
    links.heard("b", 5.0)
    assert links.suspected(12.0) == ["c"] and links.live(12.0) == ["b"]
    assert links.new_suspicions(12.0) == 1
    assert links.new_suspicions(13.0) == 0  # still the same silence
    assert links.spoke("c", 14.0) is True  # it was suspected: it is back
    assert links.new_suspicions(30.0) == 2  # a new silence counts again, and b's too


def test_cut_off_only_when_every_neighbour_is_suspected_and_never_without_neighbours():
    links = started()
    assert not links.cut_off(10.0)
    links.heard("b", 5.0)
    assert not links.cut_off(11.0)
    assert links.cut_off(16.0)
    alone = Neighbourhood("a", [], suspect_after=10.0)
    assert not alone.cut_off(100.0)


def test_a_peer_that_joined_late_starts_its_silence_clock_when_added():
    links = started()
    links.add("d", 8.0)
    assert links.suspected(15.0) == ["b", "c"]


def test_a_silent_neighbour_the_aggregates_vouch_for_is_not_suspected_until_they_stop():
    links = started()
    shown_alive = {"b"}
    links.vouch(lambda peer, now: peer in shown_alive)
    assert links.suspected(12.0) == ["c"] and links.live(12.0) == ["b"]
    assert not links.cut_off(12.0)
    shown_alive.clear()  # its last sighting left the window
    assert links.suspected(12.0) == ["b", "c"] and links.cut_off(12.0)
    assert links.spoke("b", 13.0) is True  # it was suspected: it is back


def test_a_neighbour_heard_lately_needs_no_vouching():
    links = started()
    links.vouch(lambda peer, now: False)
    links.heard("b", 5.0)
    assert links.live(12.0) == ["b"]
