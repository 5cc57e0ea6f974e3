"""Sample-aware Metropolis-Hastings mixing: gossip that converges to FedAvg's average.

Plain Metropolis-Hastings weights are doubly stochastic, so gossip converges to the
*uniform* mean of the peers' models, whereas FedAvg takes the *sample-weighted* mean.
Accepting a neighbour's proposal with probability ``min(1, n_j / n_i)`` (the
Metropolis-Hastings chain whose stationary distribution is proportional to sample
counts ``n``) gives a row-stochastic matrix ``P`` that is reversible for ``pi ~ n``:
``pi_i P_ij = pi_j P_ji``. Hence ``sum_i n_i x_i`` is preserved by ``x <- P x`` and, on
a connected graph, every peer converges to the sample-weighted mean.

It also bounds trust: however many samples a neighbour claims, its weight never exceeds
its plain Metropolis weight ``1 / (1 + max(d_i, d_j))``.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

from swarm.averaging import metropolis_weights, mixing_row
from swarm.errors import AveragingError


def _check_samples(peer: str, samples: float) -> float:
    if not (isinstance(samples, (int, float, np.integer, np.floating)) and math.isfinite(samples)) \
            or samples <= 0:
        raise AveragingError(f"sample count must be a positive number, got {samples!r}", peer=peer)
    return float(samples)


def sample_weighted_row(
    self_degree: int,
    self_samples: float,
    neighbour_degrees: Mapping[str, int],
    neighbour_samples: Mapping[str, float],
) -> tuple[float, dict[str, float]]:
    """One peer's sample-aware mixing weights from its neighbourhood alone.

    ``neighbour_degrees`` may list only the neighbours heard from; absent ones leave
    their share with this peer. Returns ``(self weight, {neighbour: weight})`` summing to 1.

    Raises
    ------
    AveragingError
        For a bad degree (see ``mixing_row``) or a sample count that is not positive,
        naming the peer at fault.
    """
    own = _check_samples("self", self_samples)
    _, base = mixing_row(self_degree, neighbour_degrees)
    weights = {}
    for peer, w in base.items():
        if peer not in neighbour_samples:
            raise AveragingError("no sample count given", peer=peer)
        weights[peer] = w * min(1.0, _check_samples(peer, neighbour_samples[peer]) / own)
    return 1.0 - math.fsum(weights.values()), weights


def sample_weighted_matrix(neighbours: Mapping[int, Sequence[int]], samples: Sequence[float]) -> np.ndarray:
    """The whole sample-aware mixing matrix (for simulations and tests).

    Row ``i`` equals node ``i``'s ``sample_weighted_row``; ``samples[i]`` is node ``i``'s count.
    """
    base = metropolis_weights(neighbours)
    n = len(neighbours)
    if len(samples) != n:
        raise AveragingError(f"need {n} sample counts, got {len(samples)}")
    counts = np.array([_check_samples(str(i), s) for i, s in enumerate(samples)])
    accept = np.minimum(1.0, counts[None, :] / counts[:, None])
    matrix = base * accept
    np.fill_diagonal(matrix, 0.0)
    np.fill_diagonal(matrix, 1.0 - matrix.sum(axis=1))
    return matrix
