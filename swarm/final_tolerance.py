"""A tolerance-ended final agreement: stop averaging once every member is near its neighbours.

After the agreed stop round, the final agreement (``final_rounds``) averages without
training. With a tolerance, it ends early: every peer still stops after the same round, the
agreed ``stop_round + final_rounds`` (the cap), but a peer skips the remaining exchanges (it
sends ``Skip`` for each, so no neighbour waits for it) once the signed progress records of
every member it knows alive, and its own, report a final round (one after the stop round)
with a distance to the neighbours' average at most the tolerance.

How the end is agreed: the end round is the cap, agreed as before; only the exchanges stop
early, on a condition that is stable and global (for one final round, every alive member's
signed record of that round), so once one peer sees it, every other sees it as the records
flood (a peer that misses a record runs to the cap: it still stops after the same round). A member
cannot end it for the others by lying low (every member's record must be below), only keep
it to the cap by reporting high; a peer that has not seen the condition yet mixes with
whichever neighbours still exchange and reaches the same end round.

The table holds ``keep`` rounds per admitted member (``Membership.admit`` bounds them).
"""

from __future__ import annotations

from collections.abc import Iterable


class FinalTolerance:
    """Every member's distances of its last rounds, and whether the final agreement may end.

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

    def note(self, member: str, round_: int, distance: float | None) -> None:
        """``member`` reported ``distance`` after ``round_`` (its own signed record, or this
        peer's); None (no neighbour exchanged that round) is no report."""
        if self.tolerance <= 0 or distance is None:
            return
        history = self.rounds.setdefault(member, {})
        history[round_] = distance
        while len(history) > self.keep:
            del history[min(history)]

    def settled(self, members: Iterable[str], own: str, stop_round: int | None) -> bool:
        """Whether, for some round after ``stop_round``, ``own`` and each of ``members``
        reported a distance within the tolerance. A member's distance after a given round
        never changes, so once true for a round it stays true, for every peer that gets the
        same records."""
        if self.tolerance <= 0 or stop_round is None:
            return False
        members = [m for m in members if m != own]
        for round_, distance in self.rounds.get(own, {}).items():
            if round_ <= stop_round or distance > self.tolerance:
                continue
            if all(self.rounds.get(m, {}).get(round_, float("inf")) <= self.tolerance for m in members):
                return True
        return False
