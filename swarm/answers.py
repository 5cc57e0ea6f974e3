"""What this peer said about recent phases, so that a neighbour that lost it hears it again.

A neighbour that lacks this peer's announcement of a phase (or its skip) asks by announcing
its own model of that phase; this part answers, at most once per retry interval per
neighbour (which also stops two peers answering each other back and forth). It also keeps
the phases that timed out on most neighbours, so that their late announcements teach the
phase deadline how long they really took (``observe_late``).
"""

from __future__ import annotations

from gossip.control import Announce, Skip
from swarm.protocol_types import Action, SendControl
from swarm.round_counter import AdaptiveDeadline, Phase


class Answers:
    """Own announcements and skips of the last two rounds, when each went to whom, late phases.

    Parameters
    ----------
    deadline:
        The phase deadline that late announcements teach.
    transfer:
        The learnt transfer time; its current value is the retry interval.
    """

    def __init__(self, deadline: AdaptiveDeadline, transfer: AdaptiveDeadline) -> None:
        self.deadline = deadline
        self.transfer = transfer
        self._own: dict[Phase, Announce | Skip] = {}
        self._sent: dict[tuple[str, Phase], float] = {}
        self._late: dict[Phase, tuple[float, set[str]]] = {}

    def __contains__(self, phase: Phase) -> bool:
        return phase in self._own

    def remember(self, phase: Phase, msg: Announce | Skip, round_: int) -> None:
        """Keep what this peer said about ``phase`` while in round ``round_``.

        Kept as long as the driver serves the models (two rounds back, like the transports'
        offer caches); older records, send times and late phases are dropped.
        """
        self._own[phase] = msg
        oldest = (round_ - 2, 0)
        for old in [ph for ph in self._own if ph < oldest]:
            del self._own[old]
        for key in [k for k in self._sent if k[1] < oldest]:
            del self._sent[key]
        for old in [ph for ph in self._late if ph < oldest]:
            del self._late[old]

    def send(self, peers: list[str], phase: Phase, now: float,
             msg: Announce | Skip | None = None) -> list[Action]:
        """Send ``msg`` (default: what was remembered for ``phase``) to ``peers``, noting when."""
        msg = msg or self._own[phase]
        for peer in peers:
            self._sent[(peer, phase)] = now
        return [SendControl(p, msg) for p in peers]

    def answer(self, sender: str, phase: Phase, now: float) -> list[Action]:
        """``sender`` announced its model of ``phase``, which this peer has reached: send it
        this peer's announcement (or skip) again, unless it went there less than a retry
        interval ago. A lost announcement is then recovered within a round trip of the
        neighbour's next (re)announcement instead of at the phase deadline."""
        if phase not in self._own:
            return []
        last = self._sent.get((sender, phase))
        if last is not None and now - last < self.transfer.current():
            return []
        return self.send([sender], phase, now)

    def mark_late(self, phase: Phase, ready_at: float, missing: set[str]) -> None:
        """``phase`` (ready at ``ready_at``) timed out on most neighbours: ``missing`` ones."""
        self._late[phase] = (ready_at, missing)

    def observe_late(self, sender: str, phase: Phase, now: float) -> None:
        """A neighbour this peer timed out on in ``phase`` (with most of the others) announced
        it after all: count its real delay.

        Without this the deadline learns only from models that made it in time, so it can
        only shrink: a peer whose deadline became too short times out on most of its
        neighbours, runs ahead and never waits again. A neighbour that never answers
        (crashed) adds nothing.
        """
        late = self._late.get(phase)
        if late is not None and sender in late[1]:
            late[1].discard(sender)
            self.deadline.observe(now - late[0])
