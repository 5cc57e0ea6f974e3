"""A peer's per-round rows (``STATE_DIR/metrics.jsonl``): how a peer writes them, how others read them.

With ``--eval-global`` a ``medswarm peer`` appends one row per completed round (the schema of
``swarm.arm_results.metrics_row``: round, loss, global and local accuracy and AUROC,
``consensus_distance``, bytes sent). ``medswarm launch`` collects them into its report and
``scripts/netns_swarm.py`` reads which rounds a hospital mixed its neighbours' models in:
the file, not the log, is the interface.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class MetricsLog:
    """Per-round rows appended to a JSON-lines file, flushed each round (a crash loses at most
    the line being written; readers skip a torn last line and keep the newest row per round)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, row: dict[str, Any]) -> None:
        """Add one row."""
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(row, sort_keys=True) + "\n")


def size(path: Path) -> int:
    """How many bytes ``path`` holds now (0 if missing): a mark for ``read_rows(path, start=...)``."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def read_rows(path: Path, start: int = 0) -> list[dict[str, Any]]:
    """The rows of a ``metrics.jsonl`` from byte ``start`` on: the newest row per round, in
    round order; a torn line (a crash while appending, or a mark in the middle of a line)
    is skipped."""
    try:
        with path.open("rb") as fh:
            fh.seek(start)
            text = fh.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return []
    rows: dict[int, dict[str, Any]] = {}
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and isinstance(row.get("round"), int):
            rows[row["round"]] = row
    return [rows[r] for r in sorted(rows)]
