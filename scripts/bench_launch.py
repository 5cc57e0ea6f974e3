"""Benchmark: real peer processes (``medswarm launch``) vs the simulation (``medswarm simulate``).

Both run the swarm on the same data, split, seed, topology (``--topology``, default the
commands' own: the one-peer exponential graph) and learning settings, through the commands a user types, for all ``--rounds`` (``--converge`` lets both
stop by convergence instead). For each seed: final swarm AUROC (mean of the
last 5 rounds; mean and worst peer) in both, their difference (target: within 0.02), and the
wall-clock time per round of the real swarm next to the simulation's (the simulation runs
all peers one after another in one process, on a virtual clock; the launch runs every peer
as its own process with Noise-encrypted libp2p on loopback, with real deadlines and
heartbeats). Writes ``results/bench_launch.json`` and ``results/bench_launch.png``.

    .venv/bin/python scripts/bench_launch.py [--seeds 3] [--rounds 30] [--peers 4] [--topology ring]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.progress import Progress  # noqa: E402
from rich.table import Table  # noqa: E402

from swarm.atomic_file import atomic_write  # noqa: E402
from swarm.config import DEFAULT_TOPOLOGY  # noqa: E402


def medswarm(*args: str) -> float:
    """Run one ``medswarm`` command quietly; its wall time in seconds."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "peers.cli", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"medswarm {args[0]} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return time.perf_counter() - start


def one_seed(seed: int, peers: int, rounds: int, data: str, work: Path, converge: bool, topology: str) -> dict:
    """Launch and simulate with one seed; both reports' headline figures."""
    common = ["--peers", str(peers), "--rounds", str(rounds), "--seed", str(seed), "--data", data,
              "--topology", topology]
    if not converge:
        common.append("--no-converge")
    sim_out, launch_out = work / f"sim-{seed}", work / f"launch-{seed}"
    sim_wall = medswarm("simulate", *common, "--arms", "swarm", "--quiet",
                        "--out", str(sim_out))
    launch_wall = medswarm("launch", *common, "--quiet", "--out", str(launch_out))
    sim = json.loads((sim_out / "report.json").read_text())["arms"]["swarm"]
    real = json.loads((launch_out / "report.json").read_text())["arms"]["swarm"]
    sim_rounds = max(sim["decision"]["stop_rounds"]) + 1
    sim_per_round = sim_wall / sim_rounds
    return {
        "seed": seed,
        "simulate": {"auroc": sim["auroc"], "worst_auroc": sim["worst_auroc"],
                     "stop_rounds": sim["decision"]["stop_rounds"], "reasons": sim["decision"]["reasons"],
                     "wall_s": sim_wall, "wall_s_per_round": sim_per_round},
        "launch": {"auroc": real["auroc"], "worst_auroc": real["worst_auroc"],
                   "stop_rounds": real["decision"]["stop_rounds"], "reasons": real["decision"]["reasons"],
                   "same_round": real["decision"]["same_round"], "wall_s": launch_wall,
                   "wall_s_per_round": real["wall_s_per_round"], "rejected": real["rejected"]},
        "auroc_launch_minus_simulate": real["auroc"] - sim["auroc"],
        "worst_auroc_launch_minus_simulate": real["worst_auroc"] - sim["worst_auroc"],
        "time_per_round_launch_vs_simulate": real["wall_s_per_round"] / sim_per_round,
        "overhead_s_per_round": real["wall_s_per_round"] - sim_per_round,
    }


def plot(path: Path, runs: list[dict]) -> None:
    """Paired AUROC per seed, and wall time per round, for launch and simulate."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    seeds = [r["seed"] for r in runs]
    x = np.arange(len(seeds))
    for offset, arm in ((-0.2, "simulate"), (0.2, "launch")):
        axes[0].bar(x + offset, [r[arm]["auroc"] for r in runs], width=0.4, label=arm)
        axes[1].bar(x + offset, [r[arm]["wall_s_per_round"] for r in runs], width=0.4, label=arm)
    for ax, title in zip(axes, ("swarm AUROC (last 5 rounds)", "wall-clock s per round")):
        ax.set_xticks(x, [f"seed {s}" for s in seeds])
        ax.set_title(title)
        ax.legend()
        ax.grid(alpha=0.3, axis="y")
    axes[0].set_ylim(0.5, 1.0)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    """Run every seed and write the JSON and the plot."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--peers", type=int, default=4)
    parser.add_argument("--data", default="breastmnist")
    parser.add_argument("--topology", default=DEFAULT_TOPOLOGY)
    parser.add_argument("--out", type=Path, default=Path("results"))
    parser.add_argument("--converge", action="store_true",
                        help="let both stop by convergence (default: both run all --rounds, so the "
                             "AUROC compares the same rounds; the vote itself is noisy on tiny "
                             "validation sets and can stop one arm at round 11, the other at 23)")
    args = parser.parse_args()
    console = Console()
    runs = []
    with tempfile.TemporaryDirectory() as tmp, Progress(console=console) as progress:
        task = progress.add_task("seeds", total=args.seeds)
        for seed in range(args.seeds):
            runs.append(one_seed(seed, args.peers, args.rounds, args.data, Path(tmp), args.converge,
                                 args.topology))
            progress.advance(task)
    diffs = [r["auroc_launch_minus_simulate"] for r in runs]
    ratios = [r["time_per_round_launch_vs_simulate"] for r in runs]
    result = {
        "config": {"peers": args.peers, "rounds": args.rounds, "data": args.data, "topology": args.topology,
                   "converge": args.converge,
                   "partition": "dirichlet:0.5", "seeds": list(range(args.seeds)), "cpus": os.cpu_count()},
        "auroc_launch_minus_simulate": {"mean": float(np.mean(diffs)), "max_abs": float(np.max(np.abs(diffs))),
                                        "per_seed": diffs, "target_max_abs": 0.02},
        "time_per_round_launch_vs_simulate": {"mean": float(np.mean(ratios)), "per_seed": ratios},
        "overhead_s_per_round": {"mean": float(np.mean([r["overhead_s_per_round"] for r in runs]))},
        "runs": runs,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write(args.out / "bench_launch.json", json.dumps(result, indent=2) + "\n")
    plot(args.out / "bench_launch.png", runs)
    table = Table(title=f"medswarm launch vs simulate (same data, split, seed, {args.topology})")
    for col in ("seed", "AUROC sim", "AUROC launch", "diff", "worst sim", "worst launch", "s/round sim",
                "s/round launch"):
        table.add_column(col, justify="right")
    for r in runs:
        table.add_row(str(r["seed"]), f"{r['simulate']['auroc']:.3f}", f"{r['launch']['auroc']:.3f}",
                      f"{r['auroc_launch_minus_simulate']:+.3f}", f"{r['simulate']['worst_auroc']:.3f}",
                      f"{r['launch']['worst_auroc']:.3f}", f"{r['simulate']['wall_s_per_round']:.2f}",
                      f"{r['launch']['wall_s_per_round']:.2f}")
    console.print(table)


if __name__ == "__main__":
    main()
