"""A token bucket: at most ``rate`` events per second on average, bursts up to ``burst``.

Without I/O or a clock of its own (time is an argument), so the transport and its tests
share it. Used per neighbour on incoming control messages: the excess is dropped and counted.
"""

from __future__ import annotations


class TokenBucket:
    """``burst`` tokens, refilled at ``rate`` per second; each event takes one.

    Parameters
    ----------
    rate:
        Tokens added per second (> 0).
    burst:
        The most tokens held (>= 1); the bucket starts full.
    now:
        The time the bucket starts at.
    """

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate, self.burst = rate, burst
        self._tokens = float(burst)
        self._at = now

    def take(self, now: float) -> bool:
        """Take one token at ``now``: True if there was one (the event may pass)."""
        self._tokens = min(float(self.burst), self._tokens + (now - self._at) * self.rate)
        self._at = max(self._at, now)
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True
