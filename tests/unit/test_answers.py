"""Unit tests of ``Answers``: repeating this peer's announcement (or skip) to a neighbour that
lost it, and learning the deadline from late announcements."""

from __future__ import annotations

from gossip.control import Announce, Skip
from swarm.answers import Answers
from swarm.protocol_types import SendControl
from swarm.round_counter import AdaptiveDeadline, DeadlineConfig

RETRY = 0.5  # the transfer time before any observation


def answers() -> Answers:
    deadline = AdaptiveDeadline(DeadlineConfig(minimum=0.1, initial=1.0, maximum=5.0))
    transfer = AdaptiveDeadline(DeadlineConfig(minimum=0.1, initial=RETRY, maximum=5.0))
    return Answers(deadline, transfer)


def announce(round_: int, step: int = 0) -> Announce:
    return Announce("a", round_, step, f"{round_:032x}", 10, 5, 2)


def test_send_goes_to_each_peer_and_defaults_to_what_was_remembered():
    part = answers()
    part.remember((3, 0), announce(3), 3)
    assert part.send(["b", "c"], (3, 0), 1.0) == [SendControl("b", announce(3)), SendControl("c", announce(3))]
    skip = Skip("a", 3, 0)
    assert part.send(["b"], (3, 0), 1.0, skip) == [SendControl("b", skip)]


def test_an_announcement_of_a_reached_phase_is_answered_once_per_retry_interval():
    part = answers()
    part.remember((3, 0), announce(3), 3)
    part.send(["b"], (3, 0), 1.0)
    assert part.answer("b", (3, 0), 1.0 + RETRY - 0.01) == []
    assert part.answer("b", (3, 0), 1.0 + RETRY) == [SendControl("b", announce(3))]
    assert part.answer("c", (3, 0), 1.1) == [SendControl("c", announce(3))]  # never sent to c


def test_nothing_to_answer_for_a_phase_never_announced():
    assert answers().answer("b", (3, 0), 1.0) == []


def test_records_older_than_two_rounds_are_dropped():
    part = answers()
    part.remember((1, 0), announce(1), 1)
    part.remember((3, 0), announce(3), 3)
    assert (1, 0) in part and (3, 0) in part
    part.remember((4, 0), announce(4), 4)
    assert (1, 0) not in part and (3, 0) in part
    assert part.answer("b", (1, 0), 9.0) == []


def test_a_late_announcement_of_a_timed_out_phase_teaches_the_deadline_once_per_neighbour():
    part = answers()
    part.mark_late((3, 0), 10.0, {"b", "c"})
    part.observe_late("b", (3, 0), 12.5)
    part.observe_late("b", (3, 0), 13.0)  # the same neighbour again: counted once
    part.observe_late("d", (3, 0), 14.0)  # not among the missing
    part.observe_late("c", (2, 0), 14.0)  # another phase
    assert part.deadline.history() == [2.5]
