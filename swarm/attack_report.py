"""What a simulation with hostile members reports: who attacked how, and how the honest fared.

The honest peers' figures leave the attackers out (their own models are honest-looking by
construction and say nothing about the harm done): the mean and worst final AUROC on the
global test set, the mean and worst over the last rounds' rows, and everything the honest
peers refused, summed by reason (``SwarmNode.stats.rejected``) and as undecodable or
unwanted control messages (the protocol's ``bad_control``).
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Iterable

import numpy as np

from swarm.attacks import by_peer
from swarm.poison import HostileNode

if TYPE_CHECKING:
    from swarm.virtual_swarm import VirtualSwarm


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def tail_auroc(rows: list[dict], peers: Iterable[int], last: int = 5) -> list[float | None]:
    """Each of ``peers``' mean global-test AUROC over the run's last ``last`` evaluated rounds
    (None for a peer without a figure)."""
    tail = set(sorted({row["round"] for row in rows})[-last:])
    return [_mean([row["auroc"] for row in rows
                   if row["peer"] == i and row["round"] in tail and row["auroc"] is not None]) for i in peers]


def attack_summary(swarm: VirtualSwarm, per_site: list[dict], last: int = 5) -> dict:
    """The ``attacks`` section of the swarm arm's report for a run of ``swarm`` whose final
    models scored ``per_site`` (the rows are ``swarm.rows``; ``last`` rounds are averaged).

    ``bad_control`` counts the current run of each peer's protocol (since its last restart).
    """
    attackers = by_peer(swarm.faults.attacks)
    honest = [p.index for p in swarm.peers if p.index not in attackers]
    final = [per_site[i]["auroc"] for i in honest if per_site[i]["auroc"] is not None]
    tail_means = [v for v in tail_auroc(swarm.rows, honest, last) if v is not None]
    rejected = sum((swarm.peers[i].node.stats.rejected for i in honest), Counter())
    bad_control = sum(swarm.peers[i].proto.stats.bad_control for i in honest if swarm.peers[i].proto is not None)
    return {
        "attackers": [{"peer": peer, "kinds": [a.label for a in mine],
                       "forged_sent": dict(node.sent) if isinstance(node := swarm.peers[peer].node, HostileNode)
                       else {}}
                      for peer, mine in sorted(attackers.items())],
        "honest_peers": honest,
        "honest": {
            "final_auroc_mean": _mean(final),
            "final_auroc_worst": min(final) if final else None,
            "last_rounds_auroc_mean": _mean(tail_means),
            "last_rounds_auroc_worst": min(tail_means) if tail_means else None,
            "rounds_averaged": min(last, len({row["round"] for row in swarm.rows})),
            "rejected": sum(rejected.values()),
            "rejected_by_reason": dict(sorted(rejected.items())),
            "bad_control": bad_control,
        },
    }


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def render_attacks(section: dict) -> list[str]:
    """The markdown lines of the ``attacks`` section (see :func:`attack_summary`)."""
    honest = section["honest"]
    reasons = ", ".join(f"{reason} {count}" for reason, count in honest["rejected_by_reason"].items()) or "none"
    lines = ["", "## Attacks (swarm arm)", "",
             "| attacker | kinds | forged messages sent |", "|---|---|---:|"]
    for attacker in section["attackers"]:
        lines.append(f"| {attacker['peer']} | {', '.join(attacker['kinds'])} | "
                     f"{sum(attacker['forged_sent'].values())} |")
    lines += ["", f"Honest peers only ({len(section['honest_peers'])}: "
                  f"{', '.join(map(str, section['honest_peers']))}; the attackers are left out of every "
                  "swarm figure of this report):", "",
              "| final AUROC mean | final AUROC worst | "
              f"last {honest['rounds_averaged']} rounds mean | last {honest['rounds_averaged']} rounds worst | "
              "rejected | bad control |",
              "|---:|---:|---:|---:|---:|---:|",
              f"| {_fmt(honest['final_auroc_mean'])} | {_fmt(honest['final_auroc_worst'])} | "
              f"{_fmt(honest['last_rounds_auroc_mean'])} | {_fmt(honest['last_rounds_auroc_worst'])} | "
              f"{honest['rejected']} | {honest['bad_control']} |",
              "", f"Rejected by the honest peers, by reason: {reasons}."]
    return lines
