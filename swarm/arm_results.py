"""What an arm of a simulation yields, and the figures read from it.

``ArmResult`` is one arm's per-round rows, per-site figures and timings; ``metrics_row`` is
the ``metrics.jsonl`` row that simulated and real peers share; ``summarize`` gives each arm's
headline figures (the last rounds' mean, the worst peer, bytes), attackers left out.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from swarm.metrics import finite_mapping, finite_or_none
from swarm.training import Metrics


@dataclass
class ArmResult:
    """What one arm produced: per-round rows, final per-site figures and timings."""

    arm: str
    rows: list[dict] = field(default_factory=list)
    per_site: list[dict] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    #: hostile peers: their rows and models are left out of the arm's figures
    attackers: tuple[int, ...] = ()


def metrics_row(arm: str, round_: int, peer: int, loss: float, glob: Metrics, loc: Metrics | None,
                consensus: float | None, bytes_sent: int) -> dict:
    """One ``metrics.jsonl`` row (NaN and infinities as null), the schema simulated and real peers share.

    A task's extra metrics on the global test set appear under ``extra`` (name -> value).
    """
    row = {
        "arm": arm,
        "round": round_,
        "peer": peer,
        "loss": finite_or_none(loss),
        "accuracy": finite_or_none(glob.accuracy),
        "auroc": finite_or_none(glob.auroc),
        "local_accuracy": finite_or_none(loc.accuracy) if loc else None,
        "local_auroc": finite_or_none(loc.auroc) if loc else None,
        "consensus_distance": consensus,
        "bytes_sent": bytes_sent,
    }
    if glob.extra:
        row["extra"] = finite_mapping(glob.extra)
    return row


def summarize(results: Iterable[ArmResult], last: int = 5) -> dict[str, dict]:
    """Per-arm headline figures: mean over the last ``last`` rounds of the global-test metrics.

    ``accuracy``/``auroc`` average over peers (for ``local``: each site's own model on the
    global test set); ``worst_auroc`` is the worst peer's mean over those rounds. An arm's
    attackers are left out of both (``attackers_left_out`` lists them); ``bytes_sent`` counts every peer.
    """
    out: dict[str, dict] = {}
    for res in results:
        rounds = sorted({row["round"] for row in res.rows})
        tail = set(rounds[-last:])
        everyone = [row for row in res.rows if row["round"] in tail]
        rows = [row for row in everyone if row["peer"] not in res.attackers]

        def mean(key: str, rs: list[dict]) -> float | None:
            vals = [row[key] for row in rs if row[key] is not None]
            return float(np.mean(vals)) if vals else None

        peers = sorted({row["peer"] for row in rows})
        peer_auroc = [mean("auroc", [row for row in rows if row["peer"] == p]) for p in peers]
        peer_auroc = [v for v in peer_auroc if v is not None]
        out[res.arm] = {
            "accuracy": mean("accuracy", rows),
            "auroc": mean("auroc", rows),
            "worst_auroc": min(peer_auroc) if peer_auroc else None,
            "rounds_averaged": len(tail),
            "per_site": res.per_site,
            "bytes_sent": int(sum(max((row["bytes_sent"] for row in res.rows if row["peer"] == p), default=0)
                                  for p in sorted({row["peer"] for row in everyone}))),
            "timings": res.timings,
            **res.extra,
        }
        if res.attackers:
            out[res.arm]["attackers_left_out"] = list(res.attackers)
    return out
