"""A tolerance-ended final agreement: stop averaging once every member is near its neighbours.

After the agreed stop round, the final agreement (``final_rounds``) averages without
training. With a tolerance, it ends early: every peer still stops after the same round, the
agreed ``stop_round + final_rounds`` (the cap), but a peer skips the remaining exchanges (it
sends ``Skip`` for each, so no neighbour waits for it) once its own distance to its neighbours'
average and the signed progress records of each of its live neighbours report, for one final
round (after the stop round), a distance at most the tolerance.

Why neighbours, not every member: a progress record travels to the origin's neighbours only
(the control plane's cost per peer does not grow with the swarm, ``swarm.swarm_view``), and
the rule the user sets is local anyway ("every peer near its neighbours' average"). The end
round is still the agreed cap, so a peer whose neighbourhood never settles runs to it and
stops after the same round as the others; a neighbour that skips only stops sending, and a
peer mixes with whichever neighbours still exchange. A member cannot end the exchanges for a
neighbour by lying low (the neighbour's own distance and its other neighbours' must be below
too), only keep them to the cap by reporting high.

The table holds ``keep`` rounds per admitted member (``Membership.admit`` bounds them).
"""

from __future__ import annotations

from collections.abc import Iterable


class FinalTolerance:
    """Members' distances of their last rounds, and whether this peer's final agreement may end.

    Parameters
    ----------
    tolerance:
        The largest distance to the neighbours' average that counts as agreed (0: never).
    keep:
        Rounds remembered per member (the final agreement's cap plus one is enough).
    """

    def __init__(self, tolerance: float, keep: int) -> None:
        self.tolerance = tolerance
        self.keep = max(1, keep)
        self.rounds: dict[str, dict[int, float]] = {}
        self.gone: set[str] = set()

    def note(self, member: str, round_: int, distance: float | None) -> None:
        """``member`` reported ``distance`` after ``round_`` (its own signed record, or this
        peer's); None (no neighbour exchanged that round) is no report."""
        if self.tolerance <= 0 or distance is None:
            return
        history = self.rounds.setdefault(member, {})
        history[round_] = distance
        while len(history) > self.keep:
            del history[min(history)]

    def left(self, member: str) -> None:
        """``member`` skipped a final round: it went to the end (within the tolerance of its
        own neighbours, or on a final model) and exchanges no more, so it no longer holds
        this peer back (or a ring would stall behind its first settled pair). Bounded by the
        neighbours: a skip comes over its sender's own link."""
        if self.tolerance > 0:
            self.gone.add(member)

    def settled(self, members: Iterable[str], own: str, stop_round: int | None) -> bool:
        """Whether, for some round after ``stop_round``, ``own`` and each of ``members`` that
        still exchanges reported a distance within the tolerance. A distance reported for a
        round never changes, so once true for a round it stays true."""
        if self.tolerance <= 0 or stop_round is None:
            return False
        members = [m for m in members if m != own and m not in self.gone]
        for round_, distance in self.rounds.get(own, {}).items():
            if round_ <= stop_round or distance > self.tolerance:
                continue
            if all(self.rounds.get(m, {}).get(round_, float("inf")) <= self.tolerance for m in members):
                return True
        return False
