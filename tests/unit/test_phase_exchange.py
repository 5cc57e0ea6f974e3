"""Unit tests of ``PhaseExchange``: one phase's announce, fetch, retry, re-announce, deadline
and mix, driven directly with hand-made events and times."""

from __future__ import annotations

import pytest

from gossip.control import Announce
from swarm.answers import Answers
from swarm.convergence import ConvergenceConfig, ConvergenceTracker
from swarm.hold import Hold
from swarm.membership import Membership
from swarm.neighbourhood import Neighbourhood
from swarm.phase_exchange import RECENT_PHASES, PhaseExchange
from swarm.protocol_types import (
    Fetch, FetchDone, Mix, ModelReady, ProtocolConfig, ProtocolStats, SendControl,
)
from swarm.round_counter import AdaptiveDeadline, DeadlineConfig, retry_config

CONFIG = ProtocolConfig(
    deadline=DeadlineConfig(minimum=0.1, initial=1.0, maximum=5.0), suspect_after=10.0, heartbeat=2.0,
    fetch_timeout=0.5, fetch_retries=1, isolation_wait=30.0,
    convergence=ConvergenceConfig(max_rounds=10, window=2, min_rounds=2),
)


def exchange(round_: int = 0, config: ProtocolConfig = CONFIG) -> PhaseExchange:
    CONFIG = config  # noqa: N806 - the module's settings unless a test gives its own
    links = Neighbourhood("a", ["b", "c"], CONFIG.suspect_after)
    links.start(0.0)
    stats = ProtocolStats()
    membership = Membership(links, CONFIG, ConvergenceTracker(CONFIG.convergence, "a"))
    deadline = AdaptiveDeadline(CONFIG.deadline)
    transfer = AdaptiveDeadline(retry_config(CONFIG.deadline, CONFIG.fetch_timeout))
    return PhaseExchange(links, membership, Answers(deadline, transfer), Hold(CONFIG.isolation_wait, stats),
                         CONFIG, stats, deadline, transfer, (round_, 0))


def ann(sender: str, round_: int = 0, step: int = 0) -> Announce:
    return Announce(sender, round_, step, f"{ord(sender):032x}", 10, 5, 2)


def ready(part: PhaseExchange, now: float = 0.0) -> list:
    return part.on_ready(ModelReady(part.phase[0], part.phase[1], "f" * 32, 10, 5), now)


def test_a_ready_model_is_announced_to_every_neighbour_and_starts_the_clocks():
    part = exchange()
    actions = ready(part, 1.0)
    assert [(a.peer, a.msg.sender) for a in actions] == [("b", "a"), ("c", "a")]
    assert part.deadline_at == 2.0 and part.reannounce_at == 1.0 + part.retry_after()
    assert ready(part, 1.1) == []  # once per phase
    assert part.on_ready(ModelReady(3, 0, "f" * 32, 10, 5), 1.2) == []  # not this phase


def test_mixes_once_every_neighbour_model_arrived():
    part = exchange()
    ready(part)
    fetches = part.consider("b", ann("b"), 0.1) + part.consider("c", ann("c"), 0.1)
    assert [f.peer for f in fetches] == ["b", "c"] and all(isinstance(f, Fetch) for f in fetches)
    assert part.consider("b", ann("b"), 0.2) == []  # already under way
    assert part.on_fetch(FetchDone("b", 0, 0, True), 0.3) == []
    assert part.on_fetch(FetchDone("c", 0, 0, True), 0.4) == [Mix(0, 0, ("b", "c"), True)]
    assert part.stats.waiting_s == pytest.approx(0.4)
    assert part.deadline.history() == [pytest.approx(0.3), pytest.approx(0.4)]


def test_a_failed_fetch_is_retried_with_twice_the_timeout_then_given_up():
    part = exchange()
    ready(part)
    first = part.consider("b", ann("b"), 0.0)[0]
    retry = part.on_fetch(FetchDone("b", 0, 0, False, "bad"), 0.1)
    assert retry == [Fetch("b", 0, 0, ann("b").digest, 10, min(0.5, 2 * first.timeout), False)]
    part.consider("c", ann("c"), 0.1)
    part.on_fetch(FetchDone("c", 0, 0, True), 0.2)
    assert part.on_fetch(FetchDone("b", 0, 0, False, "bad"), 0.3) == [Mix(0, 0, ("c",), True)]
    assert part.stats.fetch_failures == 2


def test_expired_fetch_tries_come_back_as_timeouts():
    part = exchange()
    ready(part)
    fetch = part.consider("b", ann("b"), 0.0)[0]
    assert part.expired_fetches(fetch.timeout - 0.01) == []
    assert part.expired_fetches(fetch.timeout) == [FetchDone("b", 0, 0, False, "timeout")]


def test_a_skip_of_this_phase_stops_the_wait_and_a_skip_ahead_applies_on_entering():
    part = exchange()
    ready(part)
    part.consider("b", ann("b"), 0.0)
    part.on_fetch(FetchDone("b", 0, 0, True), 0.1)
    assert part.on_skip("c", (0, 0), 0.2) == [Mix(0, 0, ("b",), True)]
    assert part.on_skip("c", (2, 0), 0.2) == []
    part.enter((2, 0))
    assert part.skipped == {"c"} and part.fetched == set()


def test_the_phase_never_goes_backwards():
    part = exchange(round_=3)
    with pytest.raises(AssertionError):
        part.enter((2, 0))


def test_silent_neighbours_get_the_announcement_again_with_backoff():
    part = exchange()
    ready(part)
    part.consider("b", ann("b"), 0.0)
    first = part.reannounce_at
    actions = part.on_timer(first)
    assert [a.peer for a in actions if isinstance(a, SendControl)] == ["c"]
    assert part.reannounce_at == pytest.approx(first + 2 * part.retry_after())


def test_the_deadline_waits_once_for_a_transfer_under_way_then_mixes_and_marks_the_phase_late():
    part = exchange()
    ready(part)
    part.reannounce_at = float("inf")  # only the deadline matters here
    fetch = part.consider("b", ann("b"), 0.9)[0]
    assert part.on_timer(1.0) == [] and part.extended and part.deadline_at == 0.9 + fetch.timeout
    mixed = part.on_timer(part.deadline_at)
    assert mixed == [Mix(0, 0, (), True)] and part.stats.phases_timed_out == 1
    part.answers.observe_late("c", (0, 0), 3.0)
    assert part.deadline.history() == [3.0]  # c was missing: its late announcement teaches


def test_holds_when_every_neighbour_is_far_behind_until_isolation_wait():
    part = exchange(round_=5)
    part.membership.saw_round("b", 2)
    part.membership.saw_round("c", 3)
    assert not any(isinstance(a, Mix) for a in ready(part, 1.0))
    assert part.hold.held and part.deadline_at == 31.0 and part.stats.holds == 1
    part.reannounce_at = float("inf")
    assert part.on_timer(31.0) == [Mix(5, 0, (), True)]


def test_a_neighbour_back_during_a_hold_gets_the_announcement_and_a_fresh_deadline():
    part = exchange(round_=5)
    part.membership.saw_round("b", 2)
    part.membership.saw_round("c", 2)
    ready(part, 1.0)
    actions = part.reconnected("b", 4.0)
    assert not part.hold.held and part.deadline_at == 5.0
    assert [(a.peer, a.msg.round) for a in actions] == [("b", 5)]


def test_timers_are_the_deadline_or_reannouncement_and_the_fetch_tries():
    part = exchange()
    assert part.timers() == []
    ready(part)
    fetch = part.consider("b", ann("b"), 0.0)[0]
    assert sorted(part.timers()) == sorted([fetch.timeout, min(part.deadline_at, part.reannounce_at)])


def test_a_large_model_gets_a_try_as_long_as_its_transfer_at_the_slowest_allowed_rate():
    from dataclasses import replace

    config = replace(CONFIG, min_throughput=1000.0)  # bytes/s
    part = exchange(config=config)
    ready(part)
    small = part.consider("b", ann("b"), 0.1)[0]  # 10 bytes: the learnt timeout (capped at 0.5 s)
    big = part.consider("c", Announce("c", 0, 0, "c" * 32, 3000, 5, 2), 0.1)[0]
    assert small.timeout <= CONFIG.fetch_timeout
    assert big.timeout == 3.0  # 3,000 bytes at 1,000 bytes/s, beyond fetch_timeout
    # never beyond the phase's longest wait, whatever the size
    assert config.transfer_floor(10**12) == CONFIG.deadline.maximum
    assert CONFIG.transfer_floor(10**12) == 0.0  # off without a rate


def onepeer_exchange() -> PhaseExchange:
    """Like ``exchange`` but on a time-varying graph: partner b at even steps, c at odd ones."""
    part = exchange()
    part.schedule = lambda phase: frozenset({"b" if (phase[0] * CONFIG.gossip_steps + phase[1]) % 2 == 0 else "c"})
    return part


def run_phases(part: PhaseExchange, late: set[str], phases: int) -> int:
    """Run ``phases`` phases from the current one; partners in ``late`` miss every deadline.
    Returns how many of the timed-out phases were marked so their late model teaches."""
    marked, now = 0, 0.0
    for _ in range(phases):
        ready(part, now)
        part.reannounce_at = float("inf")
        (partner,) = part.partners()
        if partner in late:
            now = part.deadline_at
            assert part.on_timer(now)[-1] == Mix(*part.phase, (), part.phase[1] == CONFIG.gossip_steps - 1, 1)
            before = len(part.deadline.history())
            part.answers.observe_late(partner, part.phase, now + 1.0)
            marked += len(part.deadline.history()) > before
        else:
            part.consider(partner, ann(partner, *part.phase), now + 0.1)
            assert isinstance(part.on_fetch(FetchDone(partner, *part.phase, True), now + 0.2)[-1], Mix)
        now += 1.0
        round_, step = part.phase
        part.enter((round_ + 1, 0) if step + 1 == CONFIG.gossip_steps else (round_, step + 1))
        part.links.heard("b", now)
        part.links.heard("c", now)
    return marked


def test_on_a_time_varying_graph_one_slow_partner_does_not_teach_the_deadline():
    # b misses every one of its phases, c never: half the partners of the recent phases, not most
    part = onepeer_exchange()
    assert run_phases(part, late={"b"}, phases=12) == 0
    assert part.stats.phases_timed_out == 6
    # both partners late: most of them, once the window of recent phases is full
    both = onepeer_exchange()
    assert run_phases(both, late={"b", "c"}, phases=12) == 12 - RECENT_PHASES + 1
    # on a fixed graph a phase's own neighbours decide, as before: b alone late is a minority
    fixed = exchange()
    ready(fixed)
    fixed.reannounce_at = float("inf")
    fixed.consider("c", ann("c"), 0.1)
    fixed.on_fetch(FetchDone("c", 0, 0, True), 0.2)
    assert fixed.on_timer(fixed.deadline_at) == [Mix(0, 0, ("c",), True)]
    fixed.answers.observe_late("b", (0, 0), 3.0)
    assert fixed.deadline.history() == [pytest.approx(0.2)]  # the on-time arrival only
