"""The hold: wait in a phase that no neighbour can deliver, instead of running on alone.

Rounds alone are worth little and cost a lot. Without a hold, a hospital whose network
dropped would time out once, find its neighbours a round behind (no longer waited for) and
run its remaining rounds by itself in seconds, never to mix with the swarm again. Held, it
waits: neighbours that are behind reach this phase (or catch up and skip it), silent ones
come back (which ends the hold early), and after ``isolation_wait`` it trains one round alone
and holds again.
"""

from __future__ import annotations

from collections.abc import Collection

from swarm.protocol_types import ProtocolStats


class Hold:
    """Whether and since when the current phase is held.

    Parameters
    ----------
    isolation_wait:
        The longest hold, in seconds.
    stats:
        Where holds are counted (``stats.holds``).
    """

    def __init__(self, isolation_wait: float, stats: ProtocolStats) -> None:
        self.isolation_wait = isolation_wait
        self.stats = stats
        self.since: float | None = None

    @property
    def held(self) -> bool:
        """Whether a hold is under way (it may have run out: see ``check``)."""
        return self.since is not None

    def release(self) -> None:
        """End the hold (a new phase, or a suspected neighbour heard again)."""
        self.since = None

    def check(self, live: Collection[str], neighbours: Collection[str], skipped: Collection[str],
              now: float) -> bool:
        """Whether to hold: nobody can deliver the phase (``live`` is empty) although some
        neighbour has not said to go on without it (a skip), for less than ``isolation_wait``.
        Starts (and counts) a hold when there is none yet."""
        if live or all(p in skipped for p in neighbours):
            self.since = None
            return False
        if self.since is None:
            self.since = now
            self.stats.holds += 1
        return now < self.since + self.isolation_wait

    def until(self) -> float:
        """When the current hold runs out (``inf`` when there is none)."""
        return float("inf") if self.since is None else self.since + self.isolation_wait
