#!/usr/bin/env python3
"""A live table of every hospital's round, state, neighbours and metric, from ``/status``.

    python scripts/swarm_status.py http://127.0.0.1:8081/status http://127.0.0.1:8082/status ...

Polls each peer's ``GET /status`` (see ``medswarm peer --status-port``) every ``--interval``
seconds and redraws one table until every hospital has stopped (a hospital that answered
``stopped`` once and then went away, because its process exited, counts as stopped), or
``--timeout`` passes. ``--once`` prints the table a single time. Exit code 0 when all
stopped, 1 on timeout. A URL without a path gets ``/status``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rich import box
from rich.console import Console
from rich.live import Live
from rich.table import Table

#: how a state is coloured
STYLES = {"starting": "yellow", "running": "green", "stopped": "blue", "unreachable": "red"}


@dataclass(frozen=True)
class Row:
    """One hospital's line in the table."""

    url: str
    name: str
    state: str
    round: int | None = None
    neighbours: int = 0
    suspected: int = 0
    loss: float | None = None
    metric: float | None = None
    distance: float | None = None
    stop_round: int | None = None
    reason: str | None = None
    rejected: int = 0
    error: str | None = None


def status_url(text: str) -> str:
    """``text`` with ``/status`` appended when it has no path (``http://h:8081`` -> ``.../status``)."""
    text = text.rstrip("/")
    _, _, rest = text.partition("://")
    return text if "/" in rest else f"{text}/status"


def row_from_status(url: str, doc: Mapping[str, Any] | None, error: str | None = None) -> Row:
    """The table row of one ``/status`` document (``doc`` None: the peer did not answer)."""
    if doc is None:
        host = url.partition("://")[2].split("/")[0] or url
        return Row(url, host, "unreachable", error=error or "no answer")
    last = doc.get("last") or {}
    conv = doc.get("convergence") or {}
    name = doc.get("name") or (str(doc.get("peer_id", ""))[:16] or url)
    return Row(
        url=url, name=str(name), state=str(doc.get("state", "?")), round=doc.get("round"),
        neighbours=len(doc.get("neighbours") or ()), suspected=len(doc.get("suspected") or ()),
        loss=last.get("loss"), metric=last.get("metric"), distance=last.get("distance"),
        stop_round=conv.get("stop_round"), reason=conv.get("reason"),
        rejected=sum((doc.get("rejected") or {}).values()),
    )


def update_seen_stopped(rows: Sequence[Row], seen: set[str]) -> set[str]:
    """The URLs seen in state ``stopped`` so far, including this poll's."""
    return seen | {r.url for r in rows if r.state == "stopped"}


def all_stopped(rows: Sequence[Row], seen_stopped: set[str]) -> bool:
    """Whether every hospital is stopped, or was seen stopped and has since exited."""
    return bool(rows) and all(r.state == "stopped" or (r.state == "unreachable" and r.url in seen_stopped)
                              for r in rows)


def _fmt(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def render(rows: Sequence[Row], title: str = "medswarm") -> Table:
    """The rich table of ``rows``."""
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, padding=(0, 1),
                  collapse_padding=True, pad_edge=False)
    # fits 80 columns: nbrs = neighbours ("3 (1?)": one of them suspected), metric =
    # validation loss on the hospital's local test split, dist = relative distance to the
    # neighbours' average; rejected messages are in /status itself
    for header, justify in (("hospital", "left"), ("state", "left"), ("round", "right"), ("nbrs", "right"),
                            ("loss", "right"), ("metric", "right"), ("dist", "right"), ("stop", "left")):
        table.add_column(header, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    for r in rows:
        # "converged: 4 live members voted converged" -> "68 converged"
        stop = "" if r.stop_round is None else f"{r.stop_round} {(r.reason or '').split(':')[0]}".strip()
        nbrs = str(r.neighbours) + (f" ({r.suspected}?)" if r.suspected else "")
        table.add_row(
            r.name, f"[{STYLES.get(r.state, 'white')}]{r.state}[/]",
            "–" if r.round is None else str(r.round), nbrs,
            _fmt(r.loss), _fmt(r.metric), _fmt(r.distance), stop or (r.error or ""),
        )
    return table


def fetch(url: str, timeout: float = 2.0) -> Row:
    """Poll one ``/status`` URL into a row (unreachable on any network or JSON error)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            return row_from_status(url, json.loads(answer.read()))
    except (OSError, ValueError, urllib.error.URLError) as err:
        return row_from_status(url, None, type(err).__name__)


def watch(urls: Sequence[str], *, interval: float, timeout: float, console: Console,
          poll: Callable[[str], Row] = fetch) -> bool:
    """Redraw the table until all stopped (True) or ``timeout`` s passed (False)."""
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    with Live(console=console, auto_refresh=False) as live:
        while True:
            rows = [poll(u) for u in urls]
            seen = update_seen_stopped(rows, seen)
            live.update(render(rows), refresh=True)
            if all_stopped(rows, seen):
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(interval)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("urls", nargs="+", metavar="URL", help="a peer's status URL (http://HOST:PORT/status)")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between polls (default 1)")
    parser.add_argument("--timeout", type=float, default=3600.0, help="give up after this many seconds")
    parser.add_argument("--once", action="store_true", help="print the table once and exit")
    args = parser.parse_args(argv)
    urls = [status_url(u) for u in args.urls]
    console = Console()
    if args.once:
        rows = [fetch(u) for u in urls]
        console.print(render(rows))
        return 0 if all_stopped(rows, set()) else 1
    try:
        done = watch(urls, interval=args.interval, timeout=args.timeout, console=console)
    except KeyboardInterrupt:
        return 130
    console.print("all hospitals stopped" if done else f"not all stopped after {args.timeout:g} s")
    return 0 if done else 1


if __name__ == "__main__":
    sys.exit(main())
