"""Robust gossip mixing: how much one neighbour can move a peer's model, whatever it sends.

Plain gossip (``weighted_average`` with Metropolis–Hastings weights) lets a neighbour that
sends ``x_j`` move the receiver by ``w_ij * ||x_j - x_i||``: unbounded, so one hostile
hospital sending a sign-flipped or scaled model drags its neighbours, and through them
the swarm, anywhere. The rules here bound that influence:

``mean``
    Today's mix, ``sum_j w_ij x_j`` (no bound; converges to FedAvg's mean).
``clipped``
    Self-centred clipping (He, Karimireddy and Jaggi, "Byzantine-robust decentralized
    learning via ClippedGossip", 2022): ``x_i + sum_j w_ij clip(x_j - x_i, tau)`` with
    ``clip(z, tau) = z * min(1, tau / ||z||)`` and the same (sample-aware) weights as
    ``mean``. Each clipped point lies on the segment from ``x_i`` to ``x_j``, so the mix
    stays a convex combination of the models, and neighbour ``j`` moves ``x_i`` by at most
    ``w_ij * tau``. ``tau`` is ``clip_factor`` times the *lower median* of the
    neighbours' difference norms (the ``ceil(k/2)``-th smallest of ``k``): as long as at
    least half of the neighbours heard are honest it is set by an honest distance, so a
    hostile one cannot raise it; and with honest neighbours at similar distances nothing
    is clipped, so ``clipped`` equals ``mean`` and the swarm still matches FedAvg. With a
    single neighbour heard (the one-peer exponential graph, every exchange) the current
    distances set no bound, so the lower median is taken over a *history* of the distances
    of recent accepted models too (the caller keeps it: ``SwarmNode``, :data:`CLIP_HISTORY`
    of them): a hostile partner is one of ``log2 n`` partners, so it fills at most about
    ``1/log2 n`` of that history and cannot raise its lower median.
``trimmed``
    Coordinate-wise trimmed mean over the own and the received models, dropping
    ``floor(trim * m)`` values at each end (one of three with ``trim = 1/3``); unweighted,
    so it converges to a robust centre, not to FedAvg's sample-weighted mean.
``median``
    Coordinate-wise median over the own and the received models; unweighted.

Pure functions, no state (the distance history is an argument): :func:`robust_mix_measured`
is what ``SwarmNode.mix`` calls.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from swarm.averaging import (
    Contribution,
    check_contributions,
    coordinate_median,
    trimmed_mean,
    weighted_average,
)
from swarm.errors import AveragingError, ConfigError

__all__ = ["AGGREGATORS", "Aggregation", "CLIP_HISTORY", "Mixed", "clip_radius", "clipped_mix", "robust_mix",
           "robust_mix_measured"]

#: how much wider the clipping radius is with at most two neighbours heard (see clip_radius)
FEW_NEIGHBOURS_WIDENING = 2.0

#: how many recent accepted neighbours' distances a peer keeps for the clipping radius (see
#: clip_radius): about five rounds of the one-peer graph at 8 peers and 3 exchanges a round,
#: short enough to follow the distances as training converges (README, *Robust mixing*)
CLIP_HISTORY = 16

#: with at most this many neighbours heard, the history joins the current distances
HISTORY_UP_TO = 1

#: the fewest distances in the history before it counts: a lower median of one to three
#: values is no typical distance (in its first exchanges a one-peer graph's partners are at
#: distances 2^k with models ever closer, and such a radius clipped honest ones)
HISTORY_MIN = 4

#: the mixing rules a peer can use (``--aggregator``)
AGGREGATORS = ("mean", "clipped", "trimmed", "median")


@dataclass(frozen=True)
class Aggregation:
    """How a peer combines its model with its neighbours' (see the module docstring).

    Attributes
    ----------
    kind:
        One of :data:`AGGREGATORS`.
    clip_factor:
        ``clipped``: the radius is this multiple of the lower-median neighbour distance.
        1.5 here: a hostile one pulls at most 1.5 typical honest distances per mix (with 3
        and no other check a sign-flipped neighbour cost 0.06 AUROC on BreastMNIST, 8
        peers). The command line sets 3 (``--clip-factor``): behind its norm and direction
        checks, which refuse the gross attacks, 1.5 cost 0.015 AUROC without an attacker at
        16 peers and 3 nothing (``bench_attacks``).
    trim:
        ``trimmed``: fraction of values dropped at each end per coordinate, in ``[0, 0.5)``.
    max_norm_ratio:
        If set, a received model whose norm is more than this many times the peer's own
        (or less than its inverse) is refused before any mixing (``norm-ratio``,
        ``gossip.validate``). 10 here (a toy model started at zeros grows its norm from
        nothing); the command line sets 2 (``--max-norm-ratio``): honest models of a swarm
        start alike and mix every round (within 1.5 % of each other on BreastMNIST, 16
        peers, 20 rounds).
    min_cosine:
        If set, a received model whose cosine with the peer's own is below it is refused
        before any mixing (``direction``, ``gossip.validate``), whatever the kind: clipping
        bounds a sign-flipped neighbour's pull but keeps pulling every step. Off here (a
        toy model started at zeros has honest neighbours at any angle); the command line
        sets 0.5 (``--min-cosine``), and 0 under DP (``swarm.config.default_min_cosine``:
        independent DP noise makes honest models nearly orthogonal, never opposed).

    Raises
    ------
    ConfigError
        Naming the field, for an unknown kind, a clip factor below 1 or a bad trim.
    """

    kind: str = "mean"
    clip_factor: float = 1.5
    trim: float = 0.34
    max_norm_ratio: float | None = 10.0
    min_cosine: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in AGGREGATORS:
            raise ConfigError("aggregator", f"expected one of {' | '.join(AGGREGATORS)}, got {self.kind!r}")
        if not (math.isfinite(self.clip_factor) and self.clip_factor >= 1):
            raise ConfigError("clip_factor", f"must be a finite number >= 1, got {self.clip_factor!r}")
        if not 0 <= self.trim < 0.5:
            raise ConfigError("trim", f"must be in [0, 0.5), got {self.trim!r}")
        if self.max_norm_ratio is not None and not (math.isfinite(self.max_norm_ratio) and self.max_norm_ratio > 1):
            raise ConfigError("max_norm_ratio", f"must be a finite number > 1, got {self.max_norm_ratio!r}")
        if self.min_cosine is not None and not -1 <= self.min_cosine <= 1:
            raise ConfigError("min_cosine", f"must be in [-1, 1], got {self.min_cosine!r}")


def _floating(weights: Mapping[str, np.ndarray]) -> list[str]:
    return [name for name, arr in weights.items() if arr.dtype.kind == "f"]


def _distance(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray]) -> float:
    total = 0.0
    for name in _floating(a):
        diff = np.asarray(b[name], dtype=np.float64) - np.asarray(a[name], dtype=np.float64)
        total += float(np.square(diff).sum())  # not np.dot: BLAS threads stall on a busy host
    return math.sqrt(total)


def clip_radius(distances: Sequence[float], factor: float, history: Sequence[float] = ()) -> float:
    """``factor`` times the lower median of ``distances`` (the ``ceil(k/2)``-th smallest).

    The lower median is an honest distance whenever at least half of the values are. With at
    most :data:`HISTORY_UP_TO` current distance, ``history`` (recent accepted neighbours'
    distances) joins them once it holds :data:`HISTORY_MIN`: one current distance is no bound
    on itself. With one or two values
    in all, the lower median is the smallest, and the radius is
    :data:`FEW_NEIGHBOURS_WIDENING` times wider (on a ring, 1.5 x the nearer neighbour's
    distance cost 0.04 AUROC without an attacker; 3 x cost 0.01).

    Raises
    ------
    AveragingError
        For no distances, or a negative or non-finite one (history included).
    """
    if not distances:
        raise AveragingError("no neighbour distances to set a clipping radius from")
    use = len(distances) <= HISTORY_UP_TO and len(history) >= HISTORY_MIN
    values = [*history, *distances] if use else list(distances)
    for d in values:
        if not (math.isfinite(d) and d >= 0):
            raise AveragingError(f"distance must be finite and >= 0, got {d!r}")
    ordered = sorted(values)
    # with one or two values the lower median is the nearest one: honest neighbours of a
    # heterogeneous swarm differ more than that, so the radius is twice as wide
    wide = FEW_NEIGHBOURS_WIDENING if len(ordered) <= 2 else 1.0
    return wide * factor * ordered[(len(ordered) - 1) // 2]


@dataclass(frozen=True)
class Mixed:
    """A mix's result and, for ``clipped``, each neighbour's distance to the own model (in
    the neighbours' order; empty for the other rules): what the caller's history keeps."""

    weights: dict[str, np.ndarray]
    distances: tuple[float, ...] = ()


def clipped_mix(own: Contribution, neighbours: Sequence[Contribution], factor: float,
                history: Sequence[float] = ()) -> dict[str, np.ndarray]:
    """Self-centred clipped gossip: ``x + sum_j w_j clip(x_j - x, tau)`` (module docstring).

    ``own.weight`` and the neighbours' weights are the mixing weights (their sum is
    normalised to 1). Each neighbour ``j`` moves the result by at most
    ``w_j / sum(w) * tau`` with ``tau = clip_radius(distances, factor, history)``;
    unclipped, the result is the weighted average. Integer tensors are mixed without
    clipping (they carry counters, not learnt values). Returns new arrays.

    Raises
    ------
    AveragingError
        As ``weighted_average`` (names, shapes, dtypes, weights, NaN or Inf).
    """
    return _clipped(own, neighbours, factor, history).weights


def _clipped(own: Contribution, neighbours: Sequence[Contribution], factor: float,
             history: Sequence[float]) -> Mixed:
    contributions = [own, *neighbours]
    check_contributions(contributions)
    if not neighbours:
        return Mixed({k: np.array(v, copy=True) for k, v in own.weights.items()})
    distances = [_distance(own.weights, c.weights) for c in neighbours]
    tau = clip_radius(distances, factor, history)
    scaled = [own]
    for c, d in zip(neighbours, distances):
        if d <= tau:
            scaled.append(c)
            continue
        keep = tau / d  # the clipped point x + keep * (x_j - x), on the segment to x_j
        moved = {}
        for name, arr in c.weights.items():
            if arr.dtype.kind == "f":
                base = np.asarray(own.weights[name])
                moved[name] = (base + keep * (np.asarray(arr) - base)).astype(arr.dtype, copy=False)
            else:
                moved[name] = arr
        scaled.append(Contribution(c.peer, moved, c.weight))
    return Mixed(weighted_average(scaled), tuple(distances))


def robust_mix(rule: Aggregation, own: Contribution, neighbours: Sequence[Contribution],
               history: Sequence[float] = ()) -> dict[str, np.ndarray]:
    """Mix ``own`` with ``neighbours`` by ``rule``; weights are mixing weights (``mean``, ``clipped``).

    ``trimmed`` and ``median`` count every model once, whatever its weight; ``history``
    matters to ``clipped`` only (:func:`clip_radius`).

    Raises
    ------
    AveragingError
        As the chosen aggregate.
    """
    return robust_mix_measured(rule, own, neighbours, history).weights


def robust_mix_measured(rule: Aggregation, own: Contribution, neighbours: Sequence[Contribution],
                        history: Sequence[float] = ()) -> Mixed:
    """:func:`robust_mix`, with the neighbours' distances that ``clipped`` measured."""
    everyone = [own, *neighbours]
    if rule.kind == "clipped":
        return _clipped(own, neighbours, rule.clip_factor, history)
    if rule.kind == "trimmed":
        return Mixed(trimmed_mean(everyone, rule.trim))
    if rule.kind == "median":
        return Mixed(coordinate_median(everyone))
    return Mixed(weighted_average(everyone))
