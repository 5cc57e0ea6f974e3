"""Leader-free convergence: each peer votes, and the swarm stops when every live member agrees.

A peer votes *converged* when its validation loss has plateaued, i.e. its smoothed value
has not improved on its best by more than ``metric_tol`` for ``window`` rounds (early
stopping with patience, robust to the round-to-round noise of small local validation
sets), and its distance to its neighbours' average stayed at most ``distance_tol``
(relative to its weights' norm) over those rounds. The swarm stops when a peer holds
signed converged votes from every member it knows alive (``swarm.swarm_view``); that peer
picks a stop round a few rounds ahead of every round it knows of and floods it, so all
peers stop at the same round (``swarm.stop_agreement``). ``max_rounds`` is the fallback.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from swarm.errors import ConfigError


@dataclass(frozen=True)
class ConvergenceConfig:
    """When a peer votes converged and how the stop round is chosen."""

    window: int = 5
    metric_tol: float = 0.01
    distance_tol: float = 0.05
    smoothing: float = 0.5
    min_rounds: int = 5
    max_rounds: int = 50
    stop_margin: int = 2

    def __post_init__(self) -> None:
        if self.window < 1:
            raise ConfigError("window", f"must be >= 1, got {self.window}")
        if self.max_rounds < 1:
            raise ConfigError("max_rounds", f"must be >= 1, got {self.max_rounds}")
        if self.metric_tol < 0 or self.distance_tol < 0:
            raise ConfigError("tolerance", "metric_tol and distance_tol must be >= 0")
        if not 0 < self.smoothing <= 1:
            raise ConfigError("smoothing", f"must be in (0, 1], got {self.smoothing}")
        if self.stop_margin < 1:
            raise ConfigError("stop_margin", f"must be >= 1, got {self.stop_margin}")

    @classmethod
    def for_run(cls, window: int, metric_tol: float, distance_tol: float, max_rounds: int,
                converge: bool = True) -> ConvergenceConfig:
        """The settings ``medswarm simulate`` and ``medswarm peer`` share, so a simulated and a
        real swarm vote the same way; ``converge=False`` never votes (runs ``max_rounds``)."""
        return cls(
            window=window,
            metric_tol=metric_tol if converge else 0.0,
            distance_tol=distance_tol if converge else 0.0,
            min_rounds=max(window, 5) if converge else max_rounds + 1,
            max_rounds=max_rounds,
        )


@dataclass(frozen=True)
class Vote:
    """One peer's latest convergence record as known to this peer."""

    round: int
    converged: bool
    streak: int
    seen_at: float


class ConvergenceTracker:
    """This peer's own vote and its neighbours' latest (the swarm's votes are held as signed
    records and bitmaps by ``swarm.swarm_view``)."""

    def __init__(self, config: ConvergenceConfig, self_id: str) -> None:
        self.config = config
        self.self_id = self_id
        self._distances: deque[float] = deque(maxlen=config.window)
        self.smoothed: float | None = None
        self.best: float | None = None
        self.plateau = 0
        self.streak = 0
        self.votes: dict[str, Vote] = {}

    def record_round(self, round_: int, metric: float | None, distance: float | None, now: float) -> bool:
        """Add this peer's validation loss (lower is better) and distance for a round; return its vote."""
        cfg = self.config
        if metric is not None and math.isfinite(metric):
            value = float(metric)
            self.smoothed = value if self.smoothed is None else (
                cfg.smoothing * value + (1 - cfg.smoothing) * self.smoothed)
            if self.best is None or self.smoothed < self.best - cfg.metric_tol:
                self.best, self.plateau = self.smoothed, 0
            else:
                self.plateau += 1
        if distance is not None and math.isfinite(distance):
            self._distances.append(float(distance))
        close = (not self._distances) or max(self._distances) <= cfg.distance_tol
        vote = round_ + 1 >= cfg.min_rounds and self.plateau >= cfg.window and close
        self.streak = self.streak + 1 if vote else 0
        self.votes[self.self_id] = Vote(round_, vote, self.streak, now)
        return vote

    def record_vote(self, origin: str, round_: int, converged: bool, streak: int, now: float) -> None:
        """Remember another member's latest vote (older rounds than known are ignored)."""
        known = self.votes.get(origin)
        if known is None or round_ >= known.round:
            self.votes[origin] = Vote(round_, converged, streak, now)

    def voted(self) -> bool:
        """This peer's own latest vote (False before its first completed round)."""
        own = self.votes.get(self.self_id)
        return own is not None and own.converged

    def history(self) -> dict:
        """What a checkpoint keeps of the tracker."""
        return {"distances": list(self._distances), "smoothed": self.smoothed, "best": self.best,
                "plateau": self.plateau, "streak": self.streak}

    def restore(self, data: dict) -> None:
        """Undo ``history`` after a restart."""
        self._distances.extend(float(x) for x in data.get("distances", []))
        self.smoothed = data.get("smoothed")
        self.best = data.get("best")
        self.plateau = int(data.get("plateau", 0))
        self.streak = int(data.get("streak", 0))
