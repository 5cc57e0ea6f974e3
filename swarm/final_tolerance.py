"""A tolerance-ended final agreement: stop averaging once every member is near its neighbours.

After the agreed stop round, the final agreement (``final_rounds``) averages without
training. With a tolerance, it ends early: every peer still stops after the same round, the
agreed ``stop_round + final_rounds`` (the cap), but a peer skips the remaining exchanges (it
sends ``Skip`` for each, so no neighbour waits for it) once the signed progress records of
every member it knows alive, and its own, report a final round (one after the stop round)
with a distance to the neighbours' average at most the tolerance.

How the end is agreed: the end round is the cap, agreed as before; only the exchanges stop
early, on a condition that is monotone and global (every alive member's latest signed
record), so once one peer sees it, every other sees it as the records flood. A member
cannot end it for the others by lying low (every member's record must be below), only keep
it to the cap by reporting high; a peer that has not seen the condition yet mixes with
whichever neighbours still exchange and reaches the same end round.

The table holds one entry per admitted member (``Membership.admit`` bounds them).
"""

from __future__ import annotations

from collections.abc import Iterable


class FinalTolerance:
    """Every member's latest round and distance, and whether the final agreement may end."""

    def __init__(self, tolerance: float) -> None:
        #: 0: no tolerance (the final agreement runs its rounds)
        self.tolerance = tolerance
        self.latest: dict[str, tuple[int, float | None]] = {}

    def note(self, member: str, round_: int, distance: float | None) -> None:
        """``member`` reported ``distance`` after ``round_`` (its own signed record, or this peer's)."""
        if self.tolerance > 0 and round_ >= self.latest.get(member, (-1, None))[0]:
            self.latest[member] = (round_, distance)

    def settled(self, members: Iterable[str], stop_round: int | None) -> bool:
        """Whether each of ``members`` reported a round after ``stop_round`` within the tolerance."""
        if self.tolerance <= 0 or stop_round is None:
            return False
        for member in members:
            round_, distance = self.latest.get(member, (-1, None))
            if round_ <= stop_round or distance is None or distance > self.tolerance:
                return False
        return True
