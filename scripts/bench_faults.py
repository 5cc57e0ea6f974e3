"""Benchmark: the swarm under faults, on BreastMNIST, 16 peers, the default topology.

Scenarios (same splits, seeds and initial weights in each):
  a  no faults
  b  2 stragglers training 5x slower
  c  3 peers crash at round 5, one of them returns at round 10
  d  10% of all messages and transfers dropped

For each: final swarm AUROC (mean of the last 5 evaluated rounds, mean and worst peer),
AUROC difference to (a), round at which the swarm stopped and why, and simulated time
per round as a ratio to (a). Targets: (b) time per round within 1.5x of (a), where a
fixed barrier would pay the full 5x; (c) and (d) complete with AUROC within 0.03 of (a).
Everything else is ``simulate``'s default (the one-peer exponential graph, 8-bit models,
one final-agreement round); ``--topology smallworld:4:0.2 --compress none --final-agreement 0``
is the setup of the figures measured before that default. Writes ``results/bench_faults.json``
and ``results/bench_faults.png``.

    .venv/bin/python scripts/bench_faults.py [--seeds 3] [--rounds 40] [--topology T]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.progress import Progress  # noqa: E402
from rich.table import Table  # noqa: E402

from swarm.atomic_file import atomic_write  # noqa: E402
from swarm.faults import Crash, FaultConfig  # noqa: E402
from swarm.config import DEFAULT_TOPOLOGY, LearningConfig, SimSetup  # noqa: E402
from swarm.arm_results import summarize  # noqa: E402
from swarm.simulate import Simulation, SimConfig, config_dict  # noqa: E402

SCENARIOS = {
    "a_no_faults": FaultConfig(),
    "b_2_stragglers_5x": FaultConfig(stragglers=2, slowdown=5.0),
    "c_3_crash_at_5_one_back_at_10": FaultConfig(crashes=(Crash(3, 5, 10), Crash(7, 5), Crash(12, 5))),
    "d_10pct_drop": FaultConfig(drop=0.10),
}


def run(name: str, faults: FaultConfig, seed: int, rounds: int, progress: Progress, task,
        learning: dict, topology: str) -> dict:
    """One scenario, one seed: the swarm arm only."""
    config = SimConfig(setup=SimSetup(peers=16, topology=topology, arms=("swarm",)),
                       learning=LearningConfig(data="breastmnist", rounds=rounds, seed=seed, **learning),
                       faults=faults)
    start = time.perf_counter()
    (result,) = Simulation(config).run(lambda arm, done, total: progress.update(task, description=f"{name} s{seed} r{done}"))
    summary = summarize([result])["swarm"]
    peers = summary["peers"]
    live = [p for p in peers if p["exited"]]
    return {
        "seed": seed,
        "auroc": summary["auroc"],
        "worst_auroc": summary["worst_auroc"],
        "stop_rounds": summary["decision"]["stop_rounds"],
        "same_round": summary["decision"]["same_round"],
        "reasons": summary["decision"]["reasons"],
        "sim_time_per_round_s": summary["sim_time_per_round_s"],
        "virtual_time_s": summary["virtual_time_s"],
        "live_peers": len(live),
        "completed": all(p["exited"] for p in peers if p["crashed_at"] is None or p["restarted_at"] is not None),
        "rounds_completed": [p["rounds_completed"] for p in peers],
        "phases_timed_out": sum(p["phases_timed_out"] or 0 for p in peers),
        "suspicions": sum(p["suspicions"] or 0 for p in peers),
        "catch_ups": sum(p["catch_ups"] or 0 for p in peers),
        "control_dropped": summary["control_dropped"],
        "transfers_dropped": summary["transfers_dropped"],
        "rejected": summary["rejected"],
        "wall_s": time.perf_counter() - start,
    }


def main() -> None:
    """Run every scenario for every seed, compare to (a) paired by seed, write JSON and PNG."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--topology", default=DEFAULT_TOPOLOGY)
    parser.add_argument("--compress", default=LearningConfig.compress)
    parser.add_argument("--final-agreement", type=int, default=LearningConfig.final_agreement)
    parser.add_argument("--scenarios", default=",".join(SCENARIOS),
                        help="comma-separated subset (a_no_faults, the baseline, always runs)")
    parser.add_argument("--out", type=Path, default=Path("results/bench_faults.json"))
    args = parser.parse_args()
    learning = {"compress": args.compress, "final_agreement": args.final_agreement}
    chosen = {"a_no_faults", *args.scenarios.split(",")}
    if not chosen <= set(SCENARIOS):
        parser.error(f"--scenarios: unknown {sorted(chosen - set(SCENARIOS))}")
    scenarios_run = {name: faults for name, faults in SCENARIOS.items() if name in chosen}
    torch.set_num_threads(1)
    console = Console()
    seeds = list(range(args.seeds))
    raw: dict[str, list[dict]] = {}
    with Progress(console=console) as progress:
        task = progress.add_task("faults", total=len(scenarios_run) * len(seeds))
        for name, faults in scenarios_run.items():
            raw[name] = []
            for seed in seeds:
                raw[name].append(run(name, faults, seed, args.rounds, progress, task, learning, args.topology))
                progress.advance(task)

    base = {r["seed"]: r for r in raw["a_no_faults"]}
    scenarios = {}
    for name, runs in raw.items():
        d_auroc = [r["auroc"] - base[r["seed"]]["auroc"] for r in runs]
        t_ratio = [r["sim_time_per_round_s"] / base[r["seed"]]["sim_time_per_round_s"] for r in runs]
        scenarios[name] = {
            "auroc_mean": float(np.mean([r["auroc"] for r in runs])),
            "worst_peer_auroc_mean": float(np.mean([r["worst_auroc"] for r in runs])),
            "auroc_minus_no_faults": {"mean": float(np.mean(d_auroc)), "per_seed": d_auroc},
            "time_per_round_vs_no_faults": {"mean": float(np.mean(t_ratio)), "per_seed": t_ratio},
            "stop_rounds": [r["stop_rounds"] for r in runs],
            "reasons": sorted({x for r in runs for x in r["reasons"]}),
            "all_completed": all(r["completed"] and r["same_round"] for r in runs),
            "runs": runs,
        }
    b, c, d = (scenarios.get(n) for n in ("b_2_stragglers_5x", "c_3_crash_at_5_one_back_at_10", "d_10pct_drop"))
    targets = {}  # of the scenarios run
    if b is not None:
        targets["b: time per round <= 1.5x of a"] = b["time_per_round_vs_no_faults"]["mean"] <= 1.5
    for key, s in (("c", c), ("d", d)):
        if s is not None:
            targets[f"{key}: completes"] = s["all_completed"]
            targets[f"{key}: AUROC within 0.03 of a"] = s["auroc_minus_no_faults"]["mean"] >= -0.03
    report = {
        "config": {"data": "breastmnist", "peers": 16, "topology": args.topology, **learning,
                   "partition": "dirichlet:0.5",
                   "max_rounds": args.rounds, "seeds": seeds, "cpus": os.cpu_count(),
                   "simulation_defaults": {k: v for k, v in config_dict(SimConfig()).items()
                                           if k in ("gossip_steps", "converge_window", "metric_tol",
                                                    "distance_tol", "lr", "batch_size", "quorum", "heartbeat",
                                                    "suspect_after", "deadline_initial", "spread_factor")}
                   | {"train_time": FaultConfig().train_time}},
        "scenarios": scenarios,
        "targets": targets,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(args.out, json.dumps(report, indent=2) + "\n")

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    names = list(scenarios)
    axes[0].bar(names, [scenarios[n]["auroc_mean"] for n in names], color="C0", label="mean peer")
    axes[0].bar(names, [scenarios[n]["worst_peer_auroc_mean"] for n in names], color="C1", alpha=0.6,
                label="worst peer")
    axes[0].set_ylim(0.4, 1.0)
    axes[0].set_ylabel("global test AUROC")
    axes[0].legend()
    axes[1].bar(names, [scenarios[n]["time_per_round_vs_no_faults"]["mean"] for n in names], color="C2")
    axes[1].axhline(1.5, linestyle="--", color="grey", label="target for b")
    axes[1].axhline(5.0, linestyle=":", color="red", label="fixed barrier with 5x stragglers")
    axes[1].set_ylabel("simulated time per round / no-fault")
    axes[1].legend()
    for ax in axes:
        ax.tick_params(axis="x", rotation=20, labelsize=7)
    fig.suptitle(f"BreastMNIST, 16 peers, small-world, {len(seeds)} seeds")
    fig.tight_layout()
    fig.savefig(args.out.with_suffix(".png"), dpi=110)

    table = Table(title="swarm under faults (paired over seeds)")
    for col in ("scenario", "AUROC", "worst", "ΔAUROC vs a", "time/round vs a", "stop rounds", "why"):
        table.add_column(col)
    for n in names:
        s = scenarios[n]
        table.add_row(n, f"{s['auroc_mean']:.3f}", f"{s['worst_peer_auroc_mean']:.3f}",
                      f"{s['auroc_minus_no_faults']['mean']:+.3f}", f"{s['time_per_round_vs_no_faults']['mean']:.2f}x",
                      str(s["stop_rounds"]), ", ".join(r.split(":")[0] for r in s["reasons"]))
    console.print(table)
    for k, v in targets.items():
        console.print(f"{'met ' if v else 'MISSED'}  {k}")
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
