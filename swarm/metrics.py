"""Classification metrics without scikit-learn: accuracy and AUROC.

AUROC uses the Mann-Whitney rank statistic with average ranks for ties; multi-class
AUROC is the macro mean of one-vs-rest AUROCs over classes present in the labels.
"""

from __future__ import annotations

from collections.abc import Mapping

import math

import numpy as np


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n of ``values`` with tied values sharing their mean rank."""
    order = np.argsort(values, kind="mergesort")
    sorted_vals = values[order]
    ranks = np.empty(len(values), dtype=np.float64)
    boundaries = np.flatnonzero(np.diff(sorted_vals)) + 1
    starts = np.concatenate(([0], boundaries))
    ends = np.concatenate((boundaries, [len(values)]))
    for start, end in zip(starts, ends):
        ranks[order[start:end]] = (start + end + 1) / 2.0
    return ranks


def binary_auroc(positive: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve for boolean labels ``positive``; NaN if one class is absent."""
    positive = np.asarray(positive, dtype=bool)
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = _average_ranks(np.asarray(scores, dtype=np.float64))
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def auroc(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """AUROC of class probabilities ``(N, K)`` against integer labels ``(N,)``.

    Binary tasks use the positive-class column; multi-class tasks average one-vs-rest
    AUROC over the classes that occur in ``labels`` (and have at least one negative).
    NaN when no class can be scored (e.g. a test set with one class only).
    """
    labels = np.asarray(labels)
    probabilities = np.asarray(probabilities)
    if probabilities.shape[1] == 2:
        return binary_auroc(labels == 1, probabilities[:, 1])
    scores = [
        binary_auroc(labels == k, probabilities[:, k]) for k in range(probabilities.shape[1])
    ]
    valid = [s for s in scores if not math.isnan(s)]
    return float(np.mean(valid)) if valid else math.nan


def accuracy(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """Share of samples whose most probable class is the label; NaN on an empty set."""
    if len(labels) == 0:
        return math.nan
    return float(np.mean(np.argmax(probabilities, axis=1) == np.asarray(labels)))


def finite_or_none(value: float | None) -> float | None:
    """``value`` as a plain float, or None if it is None, NaN or infinite.

    For figures that go into JSON (reports, ``metrics.jsonl`` rows, ``/status``): an AUROC
    is NaN on a one-class test set and a loss can overflow, and JSON has no NaN; ``null``
    says "no figure" and every JSON reader accepts it.
    """
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def finite_mapping(values: Mapping[str, float]) -> dict[str, float | None]:
    """``values`` with NaN and infinities as ``None`` (a task's extra metrics, for JSON)."""
    return {str(name): finite_or_none(value) for name, value in values.items()}
