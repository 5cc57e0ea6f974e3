"""Catch-up: a peer that hears a neighbour ``catchup_lag`` rounds ahead adopts its model.

Replaying the missed rounds alone would cost their training time and leave the peer behind
the swarm anyway; instead it fetches the model of the neighbour furthest ahead, keeps an
explicit ``stale_weight`` share of its own (none of it for a stopped neighbour's final model,
which is the swarm's result, once this peer has corroborated that stop) and jumps to that round, telling its neighbours which phases it
skips. Announcements of phases not reached yet are buffered here: they start a catch-up, and
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
        self.target: Announce | None = None  # the announcement being fetched
        self.due = math.inf

    @property
    def active(self) -> bool:
        """Whether a catch-up fetch is under way."""
        return self.target is not None

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
            if not kept:
                del self._pending[sender]
        return [(sender, ann) for _, sender, ann in sorted(taken, key=lambda t: t[0])]

    def finals(self, round_: int) -> int:
        """How many neighbours offer a stopped peer's final model of ``round_``."""
        final = (round_, self.config.gossip_steps)
        return sum(final in kept for kept in self._pending.values())

    def check(self, round_: int, stopped: bool, now: float, supported: int | None = None) -> list[Action]:
        """Start fetching the model furthest ahead if some neighbour is ``catchup_lag`` rounds
        ahead of ``round_`` (and no catch-up is under way and this peer has not stopped).
        Only rounds up to ``supported`` (reached by enough distinct members, see
        ``Membership.supported_round``; None: any) are candidates: one member's word that it
        is far ahead is not enough."""
        if self.active or stopped:
            return []
        top = math.inf if supported is None else supported
        ahead = [a for kept in self._pending.values() for _, a in kept.values()
                 if round_ + self.config.catchup_lag <= a.round <= top]
        if not ahead:
            return []
        best = max(ahead, key=lambda a: (a.round, a.step, a.sender))
        self.target, self.due = best, now + self.config.fetch_timeout
        return [Fetch(best.sender, best.round, best.step, best.digest, best.size, self.config.fetch_timeout, True)]

    def matches(self, event: FetchDone) -> bool:
        """Whether ``event`` ends the catch-up fetch under way."""
        ann = self.target
        return ann is not None and (event.sender, event.round, event.step) == (ann.sender, ann.round, ann.step)

    def timed_out(self, now: float) -> FetchDone | None:
        """The catch-up fetch as a failed ``FetchDone`` once its time is up, else None."""
        ann = self.target
        if ann is not None and now >= self.due:
            return FetchDone(ann.sender, ann.round, ann.step, False, "timeout")
        return None

    def settle(self, event: FetchDone, round_: int, stopped: bool, trusted: bool = True) -> Adopt | None:
        """The catch-up fetch ended: the ``Adopt`` to perform, or None (failed, or no longer
        ahead enough, or stopped meanwhile: the caller checks again for another). A final
        model is taken whole only if ``trusted`` (at a stop this peer corroborated), else
        mixed like a running one."""
        self.target, self.due = None, math.inf
        if event.round < round_ + self.config.catchup_lag or stopped:
            return None  # the swarm came to us meanwhile
        if not event.ok:
            self.stats.fetch_failures += 1
            self._pending.get(event.sender, {}).pop((event.round, event.step), None)
            return None
        self.stats.catch_ups += 1
        # a stopped neighbour's final model (offered as step ``gossip_steps``) is the swarm's
        # result: taken whole, so a latecomer ends with the model the others ended with
        final = event.step == self.config.gossip_steps and trusted
        return Adopt(event.sender, event.round, 0.0 if final else self.config.stale_weight)


def skipped_phases(phase: Phase, target: int, gossip_steps: int) -> list[Phase]:
    """The phases from ``phase`` through round ``target`` that a catch-up skips, in order."""
    return [(r, step) for r in range(phase[0], target + 1) for step in range(gossip_steps)
            if (r, step) >= phase]
