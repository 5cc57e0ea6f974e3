"""Benchmark: peak memory per virtual peer of ``medswarm simulate`` (issue 11).

Runs the swarm arm alone (pneumoniamnist, IID, exponential graph, 3 gossip steps, no early
stop, scored once at the end) in a fresh process per size and per code tree, and reads the
process's peak RSS from the kernel (``wait4``). The memory *per peer* is the marginal cost:
(peak RSS at the largest size - at the smallest) / (difference in peers), so what every
run pays once (Python, torch, the data set) does not count. ``--code before=DIR`` runs the
same command against another checkout (e.g. the commit before this change, exported with
``git archive``), so before and after are measured in the same run on the same machine.

Writes ``results/bench_memory.json`` and ``results/bench_memory.png``.

    git archive a81cb0d | (mkdir -p /tmp/medswarm-before && tar -x -C /tmp/medswarm-before)
    nice -n 10 .venv/bin/python scripts/bench_memory.py --code before=/tmp/medswarm-before --code after=.
    .venv/bin/python scripts/bench_memory.py --quick     # 8 and 32 peers, this tree only
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from swarm.atomic_file import atomic_write  # noqa: E402


def simulate_argv(peers: int, rounds: int, data: str, out: Path) -> list[str]:
    """The measured command (options that every compared code tree has)."""
    return [sys.executable, "-m", "peers.cli", "simulate", "--data", data, "--partition", "iid",
            "--topology", "exponential", "--gossip-steps", "3", "--peers", str(peers), "--rounds", str(rounds),
            "--arms", "swarm", "--no-converge", "--eval-every", str(rounds), "--quiet", "--out", str(out)]


def measure(code: Path, peers: int, rounds: int, data: str) -> dict:
    """Peak RSS (bytes) and wall time of one simulate run in a fresh process on ``code``."""
    env = {**os.environ, "PYTHONPATH": str(code.resolve())}
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        proc = subprocess.Popen(simulate_argv(peers, rounds, data, Path(tmp)), cwd=tmp, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        proc.returncode = os.waitstatus_to_exitcode(status)
    run = {"peers": peers, "peak_rss_bytes": usage.ru_maxrss * 1024, "wall_s": wall}
    if proc.returncode != 0:  # kept, with the peak until then (the old control plane's event limit)
        run["failed"] = (err.strip().splitlines() or ["exit code %d" % proc.returncode])[-1]
    return run


def per_peer(runs: list[dict]) -> float:
    """Marginal peak RSS per peer between the smallest and the largest run."""
    lo, hi = min(runs, key=lambda r: r["peers"]), max(runs, key=lambda r: r["peers"])
    return (hi["peak_rss_bytes"] - lo["peak_rss_bytes"]) / max(hi["peers"] - lo["peers"], 1)


def plot(result: dict, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 3.5))
    labels = list(result["codes"])
    values = [result["codes"][k]["per_peer_bytes"] / 2**20 for k in labels]
    ax.bar(labels, values, color=["#999999", "#2a7ab0", "#7ab02a"][: len(labels)])
    for i, v in enumerate(values):
        ax.text(i, v, f"{v:.2f} MiB", ha="center", va="bottom")
    ax.set_ylabel("peak RSS per virtual peer (MiB)")
    sizes = result["sizes"]
    ax.set_title(f"{result['data']}, IID, {sizes[0]} -> {sizes[-1]} peers, {result['rounds']} rounds")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--code", action="append", default=[], metavar="LABEL=DIR",
                        help="a code tree to measure (repeatable; default after=this tree)")
    parser.add_argument("--peers", default="8,256", help="comma-separated sizes (default 8,256)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--data", default="pneumoniamnist")
    parser.add_argument("--quick", action="store_true", help="8 and 32 peers, this tree only")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "bench_memory.json")
    parser.add_argument("--merge", type=Path, nargs="+", metavar="JSON",
                        help="measure nothing: combine the code trees of earlier outputs of this script "
                             "(e.g. before and after measured by two invocations at the same time)")
    args = parser.parse_args()
    if args.merge:
        return merge(args.merge, args.out)
    sizes = [8, 32] if args.quick else sorted(int(p) for p in args.peers.split(","))
    if len(sizes) < 2:
        parser.error("--peers needs at least two sizes (the per-peer figure is a difference)")
    codes: dict[str, Path] = {}
    for item in args.code or [f"after={ROOT}"]:
        label, sep, where = item.partition("=")
        if not sep or not Path(where).is_dir():
            parser.error(f"--code expects LABEL=DIR with an existing DIR, got {item!r}")
        codes[label] = Path(where)
    console = Console(stderr=True)
    result: dict = {"data": args.data, "partition": "iid", "topology": "exponential", "gossip_steps": 3,
                    "rounds": args.rounds, "sizes": sizes, "machine": platform.machine(), "cpus": os.cpu_count(),
                    "command": " ".join(simulate_argv(sizes[-1], args.rounds, args.data, Path("OUT"))[1:]),
                    "codes": {}}
    for label, code in codes.items():
        runs = []
        for n in sizes:
            console.print(f"[bold]{label}[/]: {n} peers ...")
            runs.append(measure(code, n, args.rounds, args.data))
            console.print(f"  peak RSS {runs[-1]['peak_rss_bytes'] / 2**20:.0f} MiB, {runs[-1]['wall_s']:.0f} s"
                          + (f" FAILED: {runs[-1]['failed']}" if "failed" in runs[-1] else ""))
        result["codes"][label] = {"dir": str(code), "runs": runs, "per_peer_bytes": per_peer(runs)}
        atomic_write(args.out, json.dumps(result, indent=2) + "\n")  # what is done so far
    return finish(result, args.out)


def merge(paths: list[Path], out: Path) -> int:
    """One result from several outputs of this script with the same run settings."""
    parts = [json.loads(p.read_text()) for p in paths]
    result = {k: v for k, v in parts[0].items() if k != "codes"}
    result["codes"], result["merged_from"] = {}, [str(p) for p in paths]
    for part in parts:
        same = {k: part[k] for k in ("data", "rounds", "sizes")} == {k: result[k] for k in ("data", "rounds", "sizes")}
        if not same:
            raise SystemExit(f"cannot merge runs of different settings: {paths}")
        result["codes"].update(part["codes"])
    return finish(result, out)


def finish(result: dict, out: Path) -> int:
    """Add the after/before ratio, write the JSON and the PNG, print the table."""
    console = Console(stderr=True)
    sizes = result["sizes"]
    if "before" in result["codes"] and "after" in result["codes"]:
        result["after_over_before"] = (result["codes"]["after"]["per_peer_bytes"]
                                       / result["codes"]["before"]["per_peer_bytes"])
    atomic_write(out, json.dumps(result, indent=2) + "\n")
    plot(result, out.with_suffix(".png"))
    table = Table(title=f"peak RSS per virtual peer ({sizes[0]} -> {sizes[-1]} peers)")
    for col in ("code", *(f"{n} peers MiB" for n in sizes), "per peer MiB"):
        table.add_column(col, justify="right")
    for label, entry in result["codes"].items():
        table.add_row(label, *(f"{r['peak_rss_bytes'] / 2**20:.0f}" for r in entry["runs"]),
                      f"{entry['per_peer_bytes'] / 2**20:.2f}")
    console.print(table)
    console.print(f"wrote {out} and {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
