"""Catch-up: a peer that hears a neighbour ``catchup_lag`` rounds ahead adopts its model.

Replaying the missed rounds alone would cost their training time and leave the peer behind
the swarm anyway; instead it fetches the model of the neighbour furthest ahead, keeps an
explicit ``stale_weight`` share of its own, and jumps to that round, telling its neighbours
which phases it skips. A stopped neighbour's final model (the swarm's result) is fetched from
every neighbour offering it and combined by a coordinate-wise median with the own model: no
single member's model is ever taken whole. Announcements of phases not reached yet are buffered here: they start a catch-up, and
the composer replays those of a phase when it enters it (``take``). At most ``max_pending``
are kept per neighbour (the lowest phase goes first: the furthest one is the catch-up
target), so a neighbour flooding announcements of many phases costs a bounded memory and
bounded work per message.
"""

from __future__ import annotations

import math

from gossip.control import Announce
from swarm.protocol_types import Action, Adopt, Fetch, FetchDone, ProtocolConfig, ProtocolStats
from swarm.round_counter import Phase

#: most neighbours a final model is fetched from at once for a catch-up
MAX_FINAL_SOURCES = 3


class CatchUp:
    """Announcements of phases ahead, and the one catch-up fetch under way (if any).

    Parameters
    ----------
    config:
        Protocol settings (``catchup_lag``, ``stale_weight``, ``fetch_timeout``, ``gossip_steps``).
    stats:
        Where catch-ups and failed catch-up fetches are counted.
    """

    def __init__(self, config: ProtocolConfig, stats: ProtocolStats) -> None:
        self.config = config
        self.stats = stats
        # per sender, at most max_pending, each with the order it first arrived in (replayed so)
        self._pending: dict[str, dict[Phase, tuple[int, Announce]]] = {}
        self._arrivals = 0
        self.targets: dict[str, Announce] = {}  # the announcements being fetched, by sender
        self._outcome: dict[str, bool] = {}  # which of them ended, and whether they arrived
        self._offered: dict[Phase, float] = {}  # when a final model of a phase was first seen
        self.due = math.inf
        self.wake = math.inf  # when to look again for a second offer of a final model

    @property
    def active(self) -> bool:
        """Whether a catch-up fetch is under way."""
        return bool(self.targets)

    @property
    def timer(self) -> float:
        """When the composer must call again: the fetches' deadline or the end of a wait."""
        return min(self.due, self.wake)

    def buffer(self, sender: str, ann: Announce) -> None:
        """Keep ``sender``'s announcement of a phase this peer has not reached (at most
        ``max_pending`` per sender: beyond that the lowest phase is forgotten)."""
        kept = self._pending.setdefault(sender, {})
        phase = (ann.round, ann.step)
        first = kept[phase][0] if phase in kept else self._arrivals
        self._arrivals += 1
        kept[phase] = (first, ann)
        if len(kept) > self.config.max_pending:
            del kept[min(kept)]

    def pending(self) -> int:
        """How many announcements are buffered (for tests and the status page)."""
        return sum(len(kept) for kept in self._pending.values())

    def take(self, phase: Phase) -> list[tuple[str, Announce]]:
        """The buffered announcements of ``phase`` (in the order they first arrived), dropping
        older ones."""
        taken = []
        for sender, kept in list(self._pending.items()):
            entry = kept.get(phase)
            if entry is not None:
                taken.append((entry[0], sender, entry[1]))
            for old in [ph for ph in kept if ph <= phase]:
                del kept[old]
                self._offered.pop(old, None)
            if not kept:
                del self._pending[sender]
        return [(sender, ann) for _, sender, ann in sorted(taken, key=lambda t: t[0])]

    def check(self, round_: int, stopped: bool, now: float, supported: int | None = None) -> list[Action]:
        """Start fetching the model furthest ahead if some neighbour is ``catchup_lag`` rounds
        ahead of ``round_`` (and no catch-up is under way and this peer has not stopped).
        Only rounds up to ``supported`` (reached by enough distinct members, see
        ``Membership.supported_round``; None: any) are candidates: one member's word that it
        is far ahead is not enough. A stopped peer's final model is fetched from every
        neighbour offering it (up to :data:`MAX_FINAL_SOURCES`), waiting up to a heartbeat for
        ``corroboration`` offers, so that no single member's model is taken whole."""
        if now >= self.wake:
            self.wake = math.inf  # the wait is over (it is set again below if still waiting)
        if self.active or stopped:
            return []
        top = math.inf if supported is None else supported
        ahead = [a for kept in self._pending.values() for _, a in kept.values()
                 if round_ + self.config.catchup_lag <= a.round <= top]
        if not ahead:
            return []
        best = max(ahead, key=lambda a: (a.round, a.step, a.sender))
        chosen = [best]
        if best.step == self.config.gossip_steps:
            phase = (best.round, best.step)
            chosen = sorted((kept[phase][1] for kept in self._pending.values() if phase in kept),
                            key=lambda a: a.sender)[:MAX_FINAL_SOURCES]
            first = self._offered.setdefault(phase, now)
            if len(chosen) < self.config.corroboration and now < first + self.config.heartbeat:
                self.wake = min(self.wake, first + self.config.heartbeat)
                return []  # wait a little for a second offer
        self.wake = math.inf
        self.targets = {a.sender: a for a in chosen}
        self._outcome = {}
        timeout = max(self.config.fetch_timeout, max(self.config.transfer_floor(a.size) for a in chosen))
        self.due = now + timeout
        return [Fetch(a.sender, a.round, a.step, a.digest, a.size, timeout, True) for a in chosen]

    def matches(self, event: FetchDone) -> bool:
        """Whether ``event`` ends one of the catch-up fetches under way."""
        ann = self.targets.get(event.sender)
        return ann is not None and (event.round, event.step) == (ann.round, ann.step)

    def timed_out(self, now: float) -> FetchDone | None:
        """A catch-up fetch not yet ended as a failed ``FetchDone`` once its time is up, else None."""
        if now < self.due:
            return None
        for sender, ann in self.targets.items():
            if sender not in self._outcome:
                return FetchDone(sender, ann.round, ann.step, False, "timeout")
        return None

    def settle(self, event: FetchDone, round_: int, stopped: bool) -> Adopt | bool | None:
        """One catch-up fetch ended: True while others of the same catch-up are still under
        way, else the ``Adopt`` to perform, or None (all failed, or no longer ahead enough, or
        stopped meanwhile: the caller checks again for another).

        A running model is mixed with the own ``stale_weight`` share. Final models fetched
        from two or more members are combined with the own model by a coordinate-wise median
        (``Adopt.others``), which one hostile member cannot pull beyond the honest values; a
        final model from one member alone is mixed like a running one."""
        self._outcome[event.sender] = event.ok
        if not event.ok:
            self.stats.fetch_failures += 1
            self._pending.get(event.sender, {}).pop((event.round, event.step), None)
        if len(self._outcome) < len(self.targets):
            return True
        arrived = [s for s in sorted(self.targets) if self._outcome[s]]
        self.targets, self._outcome, self.due = {}, {}, math.inf
        if event.round < round_ + self.config.catchup_lag or stopped or not arrived:
            return None  # the swarm came to us meanwhile, or nothing arrived
        self.stats.catch_ups += 1
        if event.step == self.config.gossip_steps and len(arrived) >= 2:
            return Adopt(arrived[0], event.round, 0.0, tuple(arrived[1:]))
        return Adopt(arrived[0], event.round, self.config.stale_weight)


def skipped_phases(phase: Phase, target: int, gossip_steps: int) -> list[Phase]:
    """The phases from ``phase`` through round ``target`` that a catch-up skips, in order."""
    return [(r, step) for r in range(phase[0], target + 1) for step in range(gossip_steps)
            if (r, step) >= phase]
