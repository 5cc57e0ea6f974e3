"""One phase's exchange: announce, fetch the neighbours' models, recover what gets lost, mix.

In a phase ``(round, step)`` a peer announces its model, pulls the announced models of its
neighbours and mixes once it has them from a quorum of those that can deliver the phase, or
when its adaptive deadline passes. Losses are recovered, not waited out: a fetch try times
out after the learnt transfer time (doubling per retry, as TCP backs off), and the
announcement is repeated to silent neighbours with exponential backoff. A deadline passing
while a transfer is under way is extended once, within bounds. A phase that times out on
most neighbours is marked so their late announcements teach the deadline (see ``Answers``);
on a time-varying graph, most of the partners of the last :data:`RECENT_PHASES` phases, so
that one slow partner is not taken for a deadline too short.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable

from gossip.control import Announce
from swarm.answers import Answers
from swarm.hold import Hold
from swarm.membership import Membership
from swarm.neighbourhood import Neighbourhood
from swarm.protocol_types import Action, Fetch, FetchDone, Mix, ModelReady, ProtocolConfig, ProtocolStats
from swarm.round_counter import AdaptiveDeadline, Phase


#: phases over which a time-varying graph judges whether most partners missed the deadline
RECENT_PHASES = 8


class PhaseExchange:
    """The current phase and everything this peer knows and does within it.

    Parameters
    ----------
    links, membership, answers, hold:
        The shared neighbourhood, members' rounds, own announcements and the hold.
    config, stats:
        Protocol settings and counters.
    deadline, transfer:
        The learnt phase deadline and transfer time.
    start:
        The first phase.
    schedule:
        The neighbours to exchange with in a phase (a time-varying graph such as
        ``swarm.schedule.OnePeerSchedule``); None: every neighbour, every phase.
    """

    def __init__(self, links: Neighbourhood, membership: Membership, answers: Answers, hold: Hold,
                 config: ProtocolConfig, stats: ProtocolStats, deadline: AdaptiveDeadline,
                 transfer: AdaptiveDeadline, start: Phase,
                 schedule: Callable[[Phase], frozenset[str]] | None = None) -> None:
        self.links, self.membership, self.answers, self.hold = links, membership, answers, hold
        self.schedule = schedule
        self.config, self.stats = config, stats
        self.deadline, self.transfer = deadline, transfer
        self.phase: Phase = start
        self._skips: dict[str, set[Phase]] = {}  # skips of phases not reached yet, max_pending each
        # (partners missed at the deadline, partners waited for) of the last phases mixed,
        # on a time-varying graph
        self._recent: deque[tuple[int, int]] = deque(maxlen=RECENT_PHASES)
        self.reset()

    def reset(self) -> None:
        """Forget the current phase's progress (and end any hold)."""
        self.ready_at: float | None = None
        self.deadline_at = math.inf
        self.reannounce_at = math.inf
        self.extended = False
        self.my_announce: Announce | None = None
        self.fetching: set[str] = set()
        self.fetched: set[str] = set()
        self.retries: dict[str, int] = {}
        self.fetch_deadline: dict[str, float] = {}
        self.fetch_started: dict[str, float] = {}
        self.nudges = 0
        self.announced: dict[str, Announce] = {}
        self.skipped: set[str] = set()
        self.mixing = False
        self.hold.release()

    def move_to(self, phase: Phase) -> None:
        """Jump to ``phase`` (after a catch-up or a restart past the end), fresh."""
        self.phase = phase
        self.reset()

    def enter(self, phase: Phase) -> None:
        """Move to ``phase`` (never backwards), applying the skips already received for it."""
        if phase < self.phase:
            raise AssertionError(f"round counter would go backwards: {self.phase} -> {phase}")
        self.move_to(phase)
        for peer, phases in list(self._skips.items()):
            if phase in phases:
                self.skipped.add(peer)
            phases -= {p for p in phases if p <= phase}
            if not phases:
                del self._skips[peer]

    def partners(self) -> list[str]:
        """The neighbours this phase exchanges with: all of them, or the schedule's share."""
        if self.schedule is None:
            return self.links.peers
        active = self.schedule(self.phase)
        return [p for p in self.links.peers if p in active]

    def timers(self) -> list[float]:
        """When this phase needs the clock: deadline or re-announcement, fetch tries."""
        times = list(self.fetch_deadline.values())
        if self.ready_at is not None and not self.mixing:
            times.append(min(self.deadline_at, self.reannounce_at))
        return times

    def retry_after(self) -> float:
        """One fetch try's timeout and the first wait before asking again: a few round trips."""
        return self.transfer.current()

    # ------------------------------------------------------------ own model
    def on_ready(self, event: ModelReady, now: float) -> list[Action]:
        """This peer's model of the phase is servable: announce it and start the clock."""
        if (event.round, event.step) != self.phase or self.ready_at is not None:
            return []
        self.ready_at = now
        self.deadline_at = now + self.deadline.current()
        self.reannounce_at = now + self.retry_after()
        partners = self.partners()
        ann = Announce(self.links.peer_id, event.round, event.step, event.digest, event.size, event.samples,
                       len(partners))
        self.my_announce = ann
        self.answers.remember(self.phase, ann, self.phase[0])
        return self.answers.send(partners, self.phase, now) + self.maybe_advance(now)

    def reconnected(self, sender: str, now: float) -> list[Action]:
        """A suspected neighbour was heard again during a hold: end it, give the phase a fresh
        deadline and tell the neighbour where this peer is, so that it answers with its model
        of this phase or its later announcements start a catch-up."""
        self.hold.release()
        if self.ready_at is None or self.mixing:
            return []
        self.deadline_at = now + self.deadline.current()
        return self.answers.send([sender], self.phase, now) if self.phase in self.answers else []

    # ------------------------------------------------------------ neighbours' models
    def on_skip(self, sender: str, phase: Phase, now: float) -> list[Action]:
        """``sender`` will not deliver ``phase`` (it caught up past it): do not wait for it.

        At most ``max_pending`` skips of later phases are kept per sender, the nearest ones
        (they are the phases entered first); a skip beyond them is forgotten.
        """
        if phase == self.phase:
            self.skipped.add(sender)
            return self.maybe_advance(now)
        if phase > self.phase:
            kept = self._skips.setdefault(sender, set())
            kept.add(phase)
            if len(kept) > self.config.max_pending:
                kept.discard(max(kept))
        return []

    def pending_skips(self) -> int:
        """How many skips of later phases are kept (for tests and the status page)."""
        return sum(len(kept) for kept in self._skips.values())

    def consider(self, sender: str, ann: Announce, now: float) -> list[Action]:
        """``sender`` announced its model of this phase: fetch it unless already under way."""
        if sender in self.fetched or sender in self.fetching or self.mixing:
            return []
        if self.schedule is not None and sender not in self.schedule(self.phase):
            return []  # not this phase's partner: its model is not mixed now
        self.announced[sender] = ann
        return [self._fetch(sender, ann, now)]

    def _fetch(self, sender: str, ann: Announce, now: float) -> Fetch:
        self.fetching.add(sender)
        # each retry may take twice as long: a transfer merely slower than usual gets through
        tries = self.retries.get(sender, 0)
        timeout = max(self.config.transfer_floor(ann.size), min(self.config.fetch_timeout, self.retry_after() * 2 ** tries))
        self.fetch_deadline[sender] = now + timeout
        self.fetch_started[sender] = now
        return Fetch(sender, ann.round, ann.step, ann.digest, ann.size, timeout, False)

    def on_fetch(self, event: FetchDone, now: float) -> list[Action]:
        """A fetch of this phase finished: learn from it, or retry, or give up on the sender."""
        if (event.round, event.step) != self.phase or event.sender not in self.fetching:
            return []
        self.fetch_deadline.pop(event.sender, None)
        self.fetching.discard(event.sender)
        started = self.fetch_started.pop(event.sender, None)
        if event.ok:
            if started is not None:
                self.transfer.observe(now - started)
            self.links.heard(event.sender, now)
            self.fetched.add(event.sender)
            self.deadline.observe(now - self.ready_at if self.ready_at is not None else 0.0)
            return self.maybe_advance(now)
        self.stats.fetch_failures += 1
        ann = self.announced.get(event.sender)
        tries = self.retries.get(event.sender, 0)
        if ann is not None and tries < self.config.fetch_retries and now < self.deadline_at:
            self.retries[event.sender] = tries + 1
            return [self._fetch(event.sender, ann, now)]
        self.skipped.add(event.sender)  # give up on it for this phase
        return self.maybe_advance(now)

    def expired_fetches(self, now: float) -> list[FetchDone]:
        """The fetch tries whose time is up, as failed ``FetchDone`` events to feed back."""
        round_, step = self.phase
        return [FetchDone(peer, round_, step, False, "timeout")
                for peer, due in list(self.fetch_deadline.items()) if now >= due]

    # ------------------------------------------------------------ mixing
    def _needed(self, now: float) -> tuple[set[str], int]:
        # wait only for neighbours that can deliver this phase: live, not skipping it, and
        # not known to be more than a round behind (a straggler still training an older
        # round cannot; it will catch up and send Skips instead)
        behind = self.phase[0] - 1
        partners = set(self.partners())
        live = {p for p in self.links.live(now) if p not in self.skipped and p in partners
                and self.membership.member_round(p, behind) >= behind}
        return live, math.ceil(self.config.quorum * len(live) - 1e-9)

    def _other_live(self, now: float) -> set[str]:
        """On a time-varying graph whose partners of this phase are all suspected (silent for
        ``suspect_after``), the other live links not more than a round behind: with one of
        them the peer is not cut off, so it goes on without a mix (a sit-out) rather than hold
        for ``isolation_wait`` (on the one-peer graph, a member that never started held each
        of its partners one step in three). A partner merely behind still holds the step, as
        before (the one-peer graph's pace). Empty on a fixed graph: there the partners are the links."""
        if self.schedule is None:
            return set()
        partners = set(self.partners())
        if not partners <= set(self.links.suspected(now)):
            return set()
        behind = self.phase[0] - 1
        return {p for p in self.links.live(now) if self.membership.member_round(p, behind) >= behind}

    def maybe_advance(self, now: float, timed_out: bool = False) -> list[Action]:
        """Mix if a quorum's models are here (or the deadline passed), unless held."""
        if self.ready_at is None or self.mixing:
            return []
        live, needed = self._needed(now)
        partners = self.partners()
        if partners and self.hold.check(live or self._other_live(now), partners, self.skipped, now):
            self.deadline_at = self.hold.until()  # wake when the hold runs out
            return []
        have = len(self.fetched & live)
        if have < needed and not timed_out:
            return []
        missed = needed - have if timed_out and have < needed else 0
        if self.schedule is not None:  # only a time-varying graph judges over recent phases
            self._recent.append((missed, needed))
        if missed:
            self.stats.phases_timed_out += 1
            if self._most_missed(have, needed):
                # most neighbours missed it: the deadline, not a slow neighbour, is the likely
                # cause; a timeout on a minority teaches nothing
                self.answers.mark_late(self.phase, self.ready_at, live - self.fetched)
        self.stats.waiting_s += now - self.ready_at
        self.mixing = True
        round_, step = self.phase
        degree = None if self.schedule is None else len(partners)
        return [Mix(round_, step, tuple(sorted(self.fetched)), step == self.config.gossip_steps - 1, degree)]

    def _most_missed(self, have: int, needed: int) -> bool:
        """Whether most neighbours missed the deadline: of this phase's on a fixed graph; on a
        time-varying one, where a phase has one partner, of the last :data:`RECENT_PHASES`
        phases' partners taken together (a straggler partner one step in ``log2 n`` is a
        minority there)."""
        if self.schedule is None:
            return 2 * have < needed
        if len(self._recent) < RECENT_PHASES:
            return False  # too few phases yet to tell a slow partner from a short deadline
        missed = sum(m for m, _ in self._recent)
        waited = sum(n for _, n in self._recent)
        return 2 * missed > waited

    def on_timer(self, now: float) -> list[Action]:
        """Re-announce to silent neighbours with backoff; at the deadline, extend once for a
        transfer under way or mix with what arrived."""
        actions: list[Action] = []
        if self.my_announce is not None and not self.mixing and now >= self.reannounce_at:
            # a neighbour that has our model already answers with its own announcement
            # (``Answers.answer``), so a lost announcement costs a round trip or two
            self.nudges += 1
            self.reannounce_at = now + self.retry_after() * 2 ** self.nudges
            quiet = [p for p in self.partners() if p not in self.announced and p not in self.fetched
                     and p not in self.skipped]
            actions += self.answers.send(quiet, self.phase, now)
        if self.ready_at is not None and not self.mixing and now >= self.deadline_at:
            in_flight = [due for peer, due in self.fetch_deadline.items() if peer in self.fetching]
            cap = self.ready_at + self.config.deadline.maximum
            if in_flight and not self.extended and max(in_flight) < cap:
                # a transfer (or its retry) is under way: let it finish once, within bounds
                self.extended = True
                self.deadline_at = max(in_flight)
                return actions
            return actions + self.maybe_advance(now, timed_out=True)
        return actions + self.maybe_advance(now)
