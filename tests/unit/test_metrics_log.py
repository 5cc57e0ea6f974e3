"""A peer's ``metrics.jsonl``: rows as the peer writes them, read back by launch and netns_swarm."""

from __future__ import annotations

import math

from peers.metrics_log import MetricsLog, read_rows, size
from swarm.arm_results import metrics_row
from swarm.training import Metrics


def row(round_, auroc, distance=0.1):
    """The row a peer appends after ``round_`` (its own writer: ``metrics_row``)."""
    return metrics_row("swarm", round_, 0, 0.5, Metrics(0.4, 0.8, auroc), Metrics(0.3, 0.7, math.nan),
                       distance, 1000)


def test_rows_keep_the_newest_per_round_and_skip_a_torn_line(tmp_path):
    log = MetricsLog(tmp_path / "metrics.jsonl")
    for r, auroc in ((0, 0.5), (1, 0.6), (1, 0.7)):  # round 1 again: a restart redid it
        log.append(row(r, auroc))
    with log.path.open("a") as fh:
        fh.write('{"round": 2, "auro')  # killed while appending
    got = read_rows(log.path)
    assert [(r["round"], r["auroc"]) for r in got] == [(0, 0.5), (1, 0.7)]
    assert got[0]["local_auroc"] is None and got[0]["consensus_distance"] == 0.1
    assert read_rows(tmp_path / "missing.jsonl") == []


def test_rows_from_a_mark_are_only_those_appended_after_it(tmp_path):
    log = MetricsLog(tmp_path / "metrics.jsonl")
    assert size(log.path) == 0
    log.append(row(0, 0.5))
    mark = size(log.path)
    log.append(row(1, 0.6, distance=None))
    log.append(row(2, 0.7))
    assert [(r["round"], r["consensus_distance"]) for r in read_rows(log.path, mark)] == [(1, None), (2, 0.1)]
    assert read_rows(log.path, mark - 3) == read_rows(log.path, mark)  # a mark inside a line
