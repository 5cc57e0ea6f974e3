"""Pure averaging math: weighted mean, robust aggregates and gossip mixing weights.

Every aggregate validates its inputs before doing any math and raises
:class:`~swarm.errors.AveragingError` naming the offending peer and tensor, so a
single broken neighbour is reported instead of silently poisoning the model.
Nothing here mutates its inputs or keeps state.

Dtype policy (all aggregates): the output dtype equals the input dtype.
Floating tensors are accumulated in their own dtype (``float16`` in ``float32``);
integer and boolean tensors (e.g. BatchNorm's ``num_batches_tracked``) are
aggregated in ``float64`` and rounded half-to-even back to the input dtype, which
keeps the result inside the inputs' range (exact for magnitudes below 2**53).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Real
from typing import Mapping, Sequence

import numpy as np

from swarm.errors import AveragingError, TopologyError

__all__ = [
    "Contribution",
    "check_contributions",
    "weighted_average",
    "coordinate_median",
    "trimmed_mean",
    "metropolis_weights",
    "mixing_row",
]

#: dtype kinds the aggregates accept: float, signed int, unsigned int, bool.
_SUPPORTED_KINDS = "fiub"


@dataclass(frozen=True)
class Contribution:
    """One peer's model offered for averaging.

    Attributes
    ----------
    peer:
        Who sent it; used only to name the culprit in error messages.
    weights:
        Named tensors (a ``state_dict`` as numpy arrays).
    weight:
        Sample count or mixing weight. Must be finite and > 0 for
        :func:`weighted_average`; ignored by the robust aggregates.
    """

    peer: str
    weights: Mapping[str, np.ndarray]
    weight: float


# --------------------------------------------------------------------------- checks


def _check_structure(contributions: Sequence[Contribution]) -> list[str]:
    """Check names, array types, shapes and dtypes against the first contribution.

    Returns the tensor names in the first contribution's order. Cheap: touches
    metadata only, never tensor data.
    """
    if len(contributions) == 0:
        raise AveragingError("no contributions to average")
    first = contributions[0]
    names = list(first.weights)
    name_set = set(names)
    for contribution in contributions:
        peer, weights = contribution.peer, contribution.weights
        for name in names:
            if name not in weights:
                raise AveragingError(
                    f"missing tensor that {first.peer} has", peer=peer, tensor=name
                )
        for name in weights:
            if name not in name_set:
                raise AveragingError(
                    f"extra tensor that {first.peer} lacks", peer=peer, tensor=name
                )
        for name in names:
            array, ref = weights[name], first.weights[name]
            if not isinstance(array, np.ndarray):
                raise AveragingError(
                    f"expected a numpy array, got {type(array).__name__}", peer=peer, tensor=name
                )
            if contribution is first and array.dtype.kind not in _SUPPORTED_KINDS:
                raise AveragingError(f"unsupported dtype {array.dtype}", peer=peer, tensor=name)
            if array.shape != ref.shape:
                raise AveragingError(
                    f"shape {array.shape} differs from {first.peer}'s {ref.shape}",
                    peer=peer,
                    tensor=name,
                )
            if array.dtype != ref.dtype:
                raise AveragingError(
                    f"dtype {array.dtype} differs from {first.peer}'s {ref.dtype}",
                    peer=peer,
                    tensor=name,
                )
    return names


def _check_weights(contributions: Sequence[Contribution]) -> float:
    """Check every mixing weight is a finite number > 0; return their (finite) total."""
    for contribution in contributions:
        weight = contribution.weight
        if isinstance(weight, bool) or not isinstance(weight, Real):
            raise AveragingError(
                f"weight must be a real number, got {type(weight).__name__}",
                peer=contribution.peer,
            )
        if not math.isfinite(weight) or weight <= 0:
            raise AveragingError(
                f"weight must be finite and > 0, got {weight!r}", peer=contribution.peer
            )
    total = math.fsum(float(c.weight) for c in contributions)
    if not math.isfinite(total) or total <= 0:
        raise AveragingError(f"total weight must be finite and > 0, got {total!r}")
    return total


def _check_finite(contributions: Sequence[Contribution], names: Sequence[str]) -> None:
    """Raise on the first NaN or Inf, scanning peers in order, then tensors in order."""
    for contribution in contributions:
        for name in names:
            array = contribution.weights[name]
            if array.dtype.kind == "f" and not np.isfinite(array).all():
                what = "NaN" if np.isnan(array).any() else "Inf"
                raise AveragingError(f"tensor contains {what}", peer=contribution.peer, tensor=name)


def check_contributions(
    contributions: Sequence[Contribution], *, check_weights: bool = True
) -> None:
    """Validate contributions before averaging; raise on the first problem found.

    Checks, in order: input not empty; every contribution has exactly the first
    one's tensor names (the missing or extra tensor is named), numpy arrays of
    the same shape and dtype; weights finite and > 0 with a finite total
    (skipped when ``check_weights`` is false, as the robust aggregates ignore
    weights); no NaN or Inf in any floating tensor.

    Raises
    ------
    AveragingError
        With ``peer`` and ``tensor`` naming the culprit (``peer`` is ``None`` for
        empty input or a bad total).
    """
    names = _check_structure(contributions)
    if check_weights:
        _check_weights(contributions)
    _check_finite(contributions, names)


# ------------------------------------------------------------------- aggregates


def _accumulator_dtype(dtype: np.dtype) -> np.dtype:
    """Dtype to do the arithmetic in: floats in themselves (at least float32), else float64."""
    if dtype.kind == "f":
        return np.promote_types(dtype, np.float32)
    return np.dtype(np.float64)


def _to_dtype(result: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Cast an aggregate back to the input dtype, rounding for integers and bools.

    Always returns an ndarray (numpy reductions turn 0-d results into scalars).
    """
    if dtype.kind != "f":
        result = np.rint(result)
    return np.asarray(result).astype(dtype, copy=False)


def weighted_average(contributions: Sequence[Contribution]) -> dict[str, np.ndarray]:
    """Average tensors weighted by ``Contribution.weight``: ``sum_i w_i x_i / sum_i w_i``.

    This is FedAvg / gossip mixing. Scaling all weights by a constant leaves the
    result unchanged. Floating tensors are accumulated in place in their own
    dtype with pre-normalised weights, one temporary buffer per tensor, so the
    cost is close to one multiply-add pass per input. Integer tensors are
    averaged in float64 and rounded (see the module docstring). Finiteness is
    checked on the result (any NaN or Inf input makes it non-finite); only then
    are the inputs scanned to name the culprit.

    Returns
    -------
    dict
        New arrays, keyed in the first contribution's tensor order.

    Raises
    ------
    AveragingError
        As :func:`check_contributions`, or if a finite input overflowed.
    """
    names = _check_structure(contributions)
    total = _check_weights(contributions)
    scales = [float(c.weight) / total for c in contributions]
    result: dict[str, np.ndarray] = {}
    with np.errstate(all="ignore"):  # non-finite results are detected below
        for name in names:
            dtype = contributions[0].weights[name].dtype
            acc = _accumulator_dtype(dtype)
            first = contributions[0].weights[name]
            out = np.empty(first.shape, dtype=acc)  # out= keeps 0-d results arrays
            np.multiply(first, acc.type(scales[0]), out=out, dtype=acc)
            if len(contributions) > 1:
                tmp = np.empty_like(out)
                for contribution, scale in zip(contributions[1:], scales[1:]):
                    np.multiply(contribution.weights[name], acc.type(scale), out=tmp, dtype=acc)
                    out += tmp
            if dtype.kind == "f" and not np.isfinite(out).all():
                _check_finite(contributions, names)
                raise AveragingError("weighted average overflowed", tensor=name)
            result[name] = _to_dtype(out, dtype)
    return result


def _stacked(contributions: Sequence[Contribution], name: str) -> np.ndarray:
    """Stack one tensor of every contribution along a new axis 0, in accumulator dtype."""
    dtype = _accumulator_dtype(contributions[0].weights[name].dtype)
    return np.stack([np.asarray(c.weights[name], dtype=dtype) for c in contributions])


def coordinate_median(contributions: Sequence[Contribution]) -> dict[str, np.ndarray]:
    """Per-coordinate median of the contributions, a Byzantine-robust aggregate.

    Fewer than half of the contributions cannot drag a coordinate outside the
    range of the honest values. Weights are ignored (every peer counts once) and
    not validated; everything else is checked as in :func:`check_contributions`.
    With an even count the two middle values are averaged.

    Raises
    ------
    AveragingError
        As :func:`check_contributions`.
    """
    check_contributions(contributions, check_weights=False)
    result: dict[str, np.ndarray] = {}
    for name in contributions[0].weights:
        dtype = contributions[0].weights[name].dtype
        result[name] = _to_dtype(np.median(_stacked(contributions, name), axis=0), dtype)
    return result


def trimmed_mean(contributions: Sequence[Contribution], trim: float) -> dict[str, np.ndarray]:
    """Per-coordinate mean after dropping the ``trim`` fraction of extremes at each end.

    With ``m`` contributions, ``k = floor(trim * m)`` largest and ``k`` smallest
    values are dropped per coordinate (as ``scipy.stats.trim_mean``), and the
    rest averaged unweighted; ``trim = 0`` is the plain mean. Robust to up to
    ``k`` outliers on each side. Weights are ignored and not validated.

    Raises
    ------
    AveragingError
        If ``trim`` is not a finite number in ``[0, 0.5)`` (which guarantees at
        least one value survives), or as :func:`check_contributions`.
    """
    if isinstance(trim, bool) or not isinstance(trim, Real) or not 0 <= trim < 0.5:
        raise AveragingError(f"trim must be a number in [0, 0.5), got {trim!r}")
    check_contributions(contributions, check_weights=False)
    m = len(contributions)
    k = math.floor(trim * m)
    result: dict[str, np.ndarray] = {}
    for name in contributions[0].weights:
        dtype = contributions[0].weights[name].dtype
        stack = _stacked(contributions, name)
        if k > 0:
            # After this partition, rows k..m-k-1 hold exactly the middle values.
            stack = np.partition(stack, (k, m - k - 1), axis=0)[k : m - k]
        result[name] = _to_dtype(stack.mean(axis=0, dtype=stack.dtype), dtype)
    return result


# ---------------------------------------------------------------- mixing weights


def _metropolis(degree_a: int, degree_b: int) -> float:
    """Metropolis–Hastings weight of one edge: ``1 / (1 + max(deg_a, deg_b))``."""
    return 1.0 / (1.0 + max(degree_a, degree_b))


def metropolis_weights(neighbours: Mapping[int, Sequence[int]]) -> np.ndarray:
    """Metropolis–Hastings mixing matrix of an undirected graph given as adjacency lists.

    ``W[i, j] = 1 / (1 + max(deg_i, deg_j))`` on edges, ``W[i, i] = 1 - sum_j W[i, j]``,
    zero elsewhere. ``W`` is symmetric and doubly stochastic with a positive
    diagonal, so repeated ``x <- W x`` preserves the mean and, on a connected
    graph, converges to it. This is the global view used by simulations and
    tests; a peer computes its own row with :func:`mixing_row`.

    Parameters
    ----------
    neighbours:
        Keys must be exactly ``0..n-1``; row ``i`` of the result is node ``i``.

    Raises
    ------
    TopologyError
        If the graph is empty, the keys are not ``0..n-1``, or the adjacency has
        unknown nodes, self-loops, duplicate entries or is not symmetric.
    """
    n = len(neighbours)
    if n == 0:
        raise TopologyError("metropolis_weights: empty graph")
    if set(neighbours) != set(range(n)):
        raise TopologyError(
            f"metropolis_weights: nodes must be 0..{n - 1}, got {sorted(neighbours)}"
        )
    for node, adjacent in neighbours.items():
        if len(set(adjacent)) != len(adjacent):
            raise TopologyError(f"metropolis_weights: node {node} lists a neighbour twice")
        for other in adjacent:
            if other == node:
                raise TopologyError(f"metropolis_weights: node {node} has a self-loop")
            if other not in neighbours:
                raise TopologyError(f"metropolis_weights: node {node} lists unknown node {other}")
            if node not in neighbours[other]:
                raise TopologyError(
                    f"metropolis_weights: not symmetric, {node} lists {other} but not vice versa"
                )
    degrees = {node: len(adjacent) for node, adjacent in neighbours.items()}
    matrix = np.zeros((n, n), dtype=np.float64)
    for node, adjacent in neighbours.items():
        row = [_metropolis(degrees[node], degrees[other]) for other in adjacent]
        matrix[node, list(adjacent)] = row
        matrix[node, node] = 1.0 - math.fsum(row)
    return matrix


def mixing_row(
    self_degree: int, neighbour_degrees: Mapping[str, int]
) -> tuple[float, dict[str, float]]:
    """One peer's Metropolis–Hastings mixing weights, from local knowledge only.

    A peer knows its own degree and its neighbours' degrees (they advertise
    them), which is all the Metropolis rule needs; the result equals its row of
    :func:`metropolis_weights`. ``neighbour_degrees`` may list only the
    neighbours heard from this round: the weight of absent ones is kept by the
    peer itself, which still sums to 1 and stays symmetric if the absent
    neighbour does the same.

    Returns
    -------
    tuple
        ``(self weight, {neighbour: weight})``, summing to 1.

    Raises
    ------
    AveragingError
        If a degree is not an integer, ``self_degree`` is negative or smaller than
        the number of neighbours given, or a neighbour's degree is < 1 (it has
        at least this peer); ``peer`` names the neighbour at fault.
    """
    if isinstance(self_degree, bool) or not isinstance(self_degree, (int, np.integer)):
        raise AveragingError(f"self degree must be an integer, got {self_degree!r}")
    if self_degree < len(neighbour_degrees):
        raise AveragingError(
            f"self degree {self_degree} is less than the {len(neighbour_degrees)} neighbours given"
        )
    weights: dict[str, float] = {}
    for peer, degree in neighbour_degrees.items():
        if isinstance(degree, bool) or not isinstance(degree, (int, np.integer)) or degree < 1:
            raise AveragingError(
                f"neighbour degree must be an integer >= 1, got {degree!r}", peer=peer
            )
        weights[peer] = _metropolis(int(self_degree), int(degree))
    return 1.0 - math.fsum(weights.values()), weights
