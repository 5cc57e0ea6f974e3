"""Which neighbours get a message that need not cross every edge: at most ``k``, in rotation.

A peer's control traffic per round must not grow with its degree (an exponential graph's
grows from 5 at 8 peers to 20 at 1,000). Model announcements go with the exchange and so
cross every edge, but a progress record, a summary or a pushed record only has to reach
each neighbour *eventually*: sending it to ``k`` neighbours per heartbeat or tick, taking
the next ``k`` of the sorted list each time, reaches every one of ``d`` neighbours within
``ceil(d / k)`` calls, and all of them at once while ``d <= k``. What a neighbour must hear
at once (a vote taken back, see ``Membership.on_progress``) does not go through here.

Each stream of messages keeps its own rotation (one for own records, one for summaries,
one for top records pushed on), so that one stream's calls never make another skip a
neighbour. The first call starts at an offset of the peer's own (its member index), so
that peers sharing neighbours do not all pick the same ones first.
"""

from __future__ import annotations

from collections.abc import Collection

from swarm.errors import ConfigError


class Rotation:
    """Up to ``k`` peers per call, the next ones of the given list each time (module docstring).

    Parameters
    ----------
    k:
        Most peers per call (>= 1).
    start:
        Where the first call starts in the list (taken modulo its length).
    """

    def __init__(self, k: int, start: int = 0) -> None:
        if k < 1:
            raise ConfigError("fanout", f"must be >= 1, got {k}")
        self.k = k
        self._next = max(0, start)

    def pick(self, peers: list[str], skip: Collection[str] = ()) -> list[str]:
        """The next at most ``k`` of ``peers`` (sorted, as ``Neighbourhood.peers``) not in ``skip``;
        all of them, in order, when there are at most ``k``."""
        chosen = [p for p in peers if p not in skip] if skip else peers
        n = len(chosen)
        if n <= self.k:
            return list(chosen)
        start = self._next % n
        self._next = start + self.k
        return [chosen[(start + i) % n] for i in range(self.k)]
