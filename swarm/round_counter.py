"""Pieces of the leader-free round counter that need no I/O: phases, deadlines, liveness.

A *phase* is ``(round, step)``: each round is local training followed by ``gossip_steps``
exchanges with neighbours. Phases are ordered lexicographically and a peer's phase
never goes backwards.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from swarm.errors import ConfigError

Phase = tuple[int, int]


@dataclass(frozen=True)
class DeadlineConfig:
    """Bounds and shape of the adaptive wait for neighbours' models.

    The deadline for a phase is ``median + spread_factor * spread`` of the recently observed
    arrival delays (time from this peer's own model being ready to a neighbour's model
    arriving), clamped to ``[minimum, maximum]``; ``initial`` is used until ``min_samples``
    delays have been seen. ``spread`` is the scaled median absolute deviation, robust to
    the few very late arrivals a straggler produces.
    """

    minimum: float = 0.2
    maximum: float = 30.0
    initial: float = 5.0
    spread_factor: float = 3.0
    window: int = 64
    min_samples: int = 4

    def __post_init__(self) -> None:
        if not (0 <= self.minimum <= self.initial <= self.maximum) or not math.isfinite(self.maximum):
            raise ConfigError("deadline", "need 0 <= minimum <= initial <= maximum < inf")
        if self.spread_factor < 0 or self.window < 1 or self.min_samples < 1:
            raise ConfigError("deadline", "spread_factor >= 0, window >= 1 and min_samples >= 1")


class AdaptiveDeadline:
    """Learns how long to wait for neighbours from the arrival delays it has observed."""

    def __init__(self, config: DeadlineConfig, history: Iterable[float] = ()) -> None:
        self.config = config
        self._delays: deque[float] = deque(maxlen=config.window)
        self._current: float | None = None  # memo of current(), until the next observation
        for delay in history:
            self.observe(delay)

    def observe(self, delay: float) -> None:
        """Record one neighbour model's arrival delay (negative delays count as 0)."""
        if math.isfinite(delay):
            self._delays.append(max(0.0, float(delay)))
            self._current = None

    def current(self) -> float:
        """How long to wait after this peer's own model is ready, in seconds."""
        if self._current is not None:
            return self._current  # asked on every event of a phase: two medians each time cost
        cfg = self.config
        if len(self._delays) < cfg.min_samples:
            return cfg.initial
        arr = np.fromiter(self._delays, dtype=float)
        median = float(np.median(arr))
        spread = 1.4826 * float(np.median(np.abs(arr - median)))
        self._current = float(np.clip(median + cfg.spread_factor * spread, cfg.minimum, cfg.maximum))
        return self._current

    def history(self) -> list[float]:
        """The delays in the window (saved in checkpoints so a restart keeps its pace)."""
        return list(self._delays)


def retry_config(deadline: DeadlineConfig, fetch_timeout: float) -> DeadlineConfig:
    """How long one fetch try may take: learnt from completed transfers like the deadline.

    A lost request or answer is only noticed when its try times out, so that timeout
    must follow the link (a few round trips plus the transfer), not the phase deadline,
    which also absorbs neighbours' training-time spread and is many round trips long.
    Bounded by ``deadline.minimum`` below and ``fetch_timeout`` above; until enough
    transfers were seen, half the initial phase deadline.
    """
    high = max(fetch_timeout, 1e-9)
    low = min(deadline.minimum, high)
    initial = min(high, max(deadline.initial / 2, low))
    return DeadlineConfig(minimum=low, maximum=high, initial=initial,
                          spread_factor=deadline.spread_factor, window=deadline.window,
                          min_samples=deadline.min_samples)


class Liveness:
    """Who has been heard from recently: a neighbour silent for ``suspect_after`` is suspected.

    Any message from a peer clears the suspicion at once (it has come back).
    """

    def __init__(self, suspect_after: float) -> None:
        if not suspect_after > 0:
            raise ConfigError("suspect_after", f"must be > 0, got {suspect_after}")
        self.suspect_after = suspect_after
        self._last: dict[str, float] = {}

    def heard(self, peer: str, now: float) -> bool:
        """Note a message from ``peer``; True if it was suspected until now (it rejoined)."""
        was_suspected = self.is_suspected(peer, now)
        previous = self._last.get(peer)
        self._last[peer] = now if previous is None else max(previous, now)
        return was_suspected and previous is not None

    def track(self, peer: str, now: float) -> None:
        """Start the silence clock for a peer never heard from (e.g. a bootstrap neighbour)."""
        self._last.setdefault(peer, now)

    def is_suspected(self, peer: str, now: float) -> bool:
        """True when ``peer`` has been silent for longer than ``suspect_after``."""
        last = self._last.get(peer)
        return last is not None and now - last > self.suspect_after

    def last_heard(self, peer: str) -> float | None:
        """When ``peer`` was last heard from, if ever."""
        return self._last.get(peer)

    def next_change(self, now: float) -> float | None:
        """The earliest future time at which a currently live peer becomes suspected."""
        times = [t + self.suspect_after for t in self._last.values() if t + self.suspect_after >= now]
        return min(times) if times else None
