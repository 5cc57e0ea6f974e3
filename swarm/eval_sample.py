"""Which peers are scored on the global test set in an evaluated round (``--eval-peers K``).

Scoring every peer's model on the global test set every round costs O(n) evaluations per
round, the largest share of a big simulation's wall time after training. With ``K``, an
evaluated round scores ``K`` peers: a seeded, *rotating* sample (a fixed permutation of
the peers, walked ``K`` at a time), so that over ``ceil(n / K)`` evaluated rounds every
peer is scored once and a bad peer cannot hide for the whole run as it could outside a
fixed sample; the seed makes it reproducible and the same in every arm (paired arms).
The last round (and a swarm's stop round) scores every peer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: mixed into the run's seed for the permutation (independent of every other stream)
_STREAM = 0xE7A1


@dataclass(frozen=True)
class EvalSample:
    """The peers scored per evaluated round: ``k`` of ``n`` (``None``: all), rotating."""

    n: int
    k: int | None = None
    seed: int = 0
    every: int = 1
    _order: tuple[int, ...] = field(init=False, repr=False, compare=False)
    _position: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        from swarm.errors import ConfigError

        if self.k is not None and self.k < 1:
            raise ConfigError("eval_peers", f"must be >= 1, got {self.k}")
        order = np.random.default_rng([self.seed, _STREAM]).permutation(self.n) if self.sampled else np.arange(0)
        position = np.empty(len(order), dtype=np.int64)
        position[order] = np.arange(len(order))
        object.__setattr__(self, "_order", tuple(int(i) for i in order))
        object.__setattr__(self, "_position", tuple(int(i) for i in position))

    @property
    def sampled(self) -> bool:
        """Whether fewer than all peers are scored in a round."""
        return self.k is not None and self.k < self.n

    def _start(self, round_: int) -> int:
        return (round_ // self.every) * int(self.k or 0) % self.n

    def peers(self, round_: int) -> list[int]:
        """The peers scored in evaluated round ``round_`` (sorted)."""
        if not self.sampled:
            return list(range(self.n))
        start = self._start(round_)
        return sorted(self._order[(start + j) % self.n] for j in range(int(self.k or 0)))

    def includes(self, round_: int, peer: int) -> bool:
        """Whether ``peer`` is scored in evaluated round ``round_`` (O(1))."""
        return not self.sampled or (self._position[peer] - self._start(round_)) % self.n < int(self.k or 0)

    def report(self, rows: list[dict]) -> dict:
        """For an arm's report: :meth:`describe` plus the peers that have rows, per round."""
        rounds: dict[int, set[int]] = {}
        for row in rows:
            rounds.setdefault(row["round"], set()).add(row["peer"])
        return {**self.describe(), "rounds": {r: sorted(rounds[r]) for r in sorted(rounds)}}

    def describe(self) -> dict:
        """For the report: K, n and how the sample is drawn."""
        return {"k": self.k if self.sampled else self.n, "n": self.n,
                "sample": "rotating seeded permutation; all peers in the last round" if self.sampled else "all"}
