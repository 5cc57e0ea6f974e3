"""Benchmark: what each way of spending fewer bytes costs the swarm's peers, against FedAvg.

For every dataset, seed and configuration the swarm arm runs with the defaults (8 peers,
Dirichlet(0.5) label skew for the images, the four hospitals of ``heart``, 30 rounds at most
with the usual stopping rule) and one change; FedAvg runs once per dataset and seed on the
same split, initial weights and training seeds (paired). Reported per configuration: the
mean peer's and the worst peer's AUROC minus FedAvg's (last 5 rounds, global test set) and
the bytes each peer sent (control messages and served models) relative to what each site
uploads in FedAvg (float32; FedAvg's download is the server's).

Targets (issue 14): mean peer within 0.01 of FedAvg, worst peer within 0.03, at most 1.5x
FedAvg's bytes, on every dataset.

Writes ``results/bench_efficiency.json`` (partial results after every run; a re-run skips the
runs already in it) and ``results/bench_efficiency.png`` (AUROC vs bytes, per dataset).

    .venv/bin/python scripts/bench_efficiency.py                      # full: 3 sets, seeds 0-4
    .venv/bin/python scripts/bench_efficiency.py --seeds 3 --jobs 2   # 3 seeds, 2 processes
    .venv/bin/python scripts/bench_efficiency.py --report-only        # summarise what has run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FormatStrFormatter, NullFormatter  # noqa: E402
import numpy as np  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.progress import Progress  # noqa: E402
from rich.table import Table  # noqa: E402

from swarm.atomic_file import atomic_write  # noqa: E402

MEAN_TARGET, WORST_TARGET, BYTES_TARGET = 0.01, 0.03, 1.5
DATASETS = ("breastmnist", "pneumoniamnist", "heart")
#: the final tolerance of the ``ft`` configurations (``--final-tolerance``), with a cap of 3 rounds
FINAL_TOLERANCE = 0.01
#: configuration name -> (topology, compress, float16, final agreement rounds, CHOCO, final
#: tolerance); the first is today's default
CONFIGS: dict[str, tuple[str, str, bool, int, bool, float]] = {
    "ring": ("ring", "none", False, 0, False, 0.0),
    "ring q8": ("ring", "q8", False, 0, False, 0.0),
    "ring fa2": ("ring", "none", False, 2, False, 0.0),
    "onepeer-exp": ("onepeer-exp", "none", False, 0, False, 0.0),
    "onepeer-exp f16": ("onepeer-exp", "none", True, 0, False, 0.0),
    "onepeer-exp q8": ("onepeer-exp", "q8", False, 0, False, 0.0),
    "onepeer-exp q8 fa1": ("onepeer-exp", "q8", False, 1, False, 0.0),
    "ring choco q8": ("ring", "q8", False, 0, True, 0.0),
    "ring choco topk0.1": ("ring", "topk:0.1", False, 0, True, 0.0),
    "onepeer-exp choco q8": ("onepeer-exp", "q8", False, 0, True, 0.0),
    "onepeer-exp choco topk0.1": ("onepeer-exp", "topk:0.1", False, 0, True, 0.0),
    "ring choco q8 ft": ("ring", "q8", False, 3, True, FINAL_TOLERANCE),
    "onepeer-exp choco q8 ft": ("onepeer-exp", "q8", False, 3, True, FINAL_TOLERANCE),
}
FIELDS = ("topology", "compress", "float16", "final_agreement", "choco", "final_tolerance")


def run_one(dataset: str, seed: int, config: str | None) -> dict:
    """One arm on one dataset and seed: FedAvg (``config`` None) or the swarm with ``config``."""
    import torch

    from swarm.config import LearningConfig, OutputConfig, SimSetup
    from swarm.arm_results import summarize
    from swarm.simulate import SimConfig, Simulation

    torch.set_num_threads(1)
    topology, compress, float16, final, choco, tolerance = \
        CONFIGS[config] if config is not None else CONFIGS["ring"]
    arm = "swarm" if config is not None else "fedavg"
    # the default number of peers: 8, or heart's four hospitals (its default split is by site)
    sim_config = SimConfig(setup=SimSetup(arms=(arm,), topology=topology),
                           learning=LearningConfig(data=dataset, seed=seed, compress=compress, float16=float16,
                                                   final_agreement=final, choco=choco, final_tolerance=tolerance),
                           output=OutputConfig())
    start = time.perf_counter()
    sim = Simulation(sim_config)
    summary = summarize(sim.run())[arm]
    return {"data": dataset, "seed": seed, "config": config or "fedavg", "peers": sim.n,
            "auroc": summary["auroc"], "worst_auroc": summary["worst_auroc"],
            "bytes_sent": summary["bytes_sent"], "wall_s": time.perf_counter() - start}


def _key(run: dict) -> tuple[str, int, str]:
    return run["data"], run["seed"], run["config"]


def aggregate(runs: list[dict], datasets: list[str], seeds: list[int], configs: list[str]) -> dict:
    """Paired differences to FedAvg per dataset and configuration, and the targets."""
    by = {_key(r): r for r in runs}
    out: dict = {}
    for d in datasets:
        out[d] = {}
        for c in configs:
            pairs = [(by[(d, s, c)], by[(d, s, "fedavg")]) for s in seeds
                     if (d, s, c) in by and (d, s, "fedavg") in by]
            if not pairs:
                continue
            mean = [sw["auroc"] - fa["auroc"] for sw, fa in pairs]
            worst = [sw["worst_auroc"] - fa["auroc"] for sw, fa in pairs]
            ratio = [sw["bytes_sent"] / fa["bytes_sent"] for sw, fa in pairs]
            row = {"seeds": [sw["seed"] for sw, _ in pairs],
                   "mean_minus_fedavg": float(np.mean(mean)), "mean_minus_fedavg_per_seed": mean,
                   "worst_minus_fedavg": float(np.mean(worst)), "worst_minus_fedavg_per_seed": worst,
                   "bytes_vs_fedavg": float(np.mean(ratio)),
                   "swarm_auroc": float(np.mean([sw["auroc"] for sw, _ in pairs])),
                   "fedavg_auroc": float(np.mean([fa["auroc"] for _, fa in pairs]))}
            row["meets_target"] = (row["mean_minus_fedavg"] >= -MEAN_TARGET
                                   and row["worst_minus_fedavg"] >= -WORST_TARGET
                                   and row["bytes_vs_fedavg"] <= BYTES_TARGET)
            out[d][c] = row
    return out


def markdown(summary: dict) -> str:
    """The summary as a Markdown table (what the README shows)."""
    lines = ["| data | configuration | seeds | mean peer − FedAvg | worst peer − FedAvg | bytes vs FedAvg | target |",
             "|---|---|---|---:|---:|---:|---|"]
    for d, rows in summary.items():
        for c, row in rows.items():
            seeds = row["seeds"]
            span = str(seeds[0]) if len(seeds) == 1 else f"{seeds[0]}–{seeds[-1]}" \
                if seeds == list(range(seeds[0], seeds[-1] + 1)) else ",".join(map(str, seeds))
            lines.append(f"| {d} | {c} | {span} | {row['mean_minus_fedavg']:+.3f} | {row['worst_minus_fedavg']:+.3f} "
                         f"| {row['bytes_vs_fedavg']:.2f}x | {'met' if row['meets_target'] else 'missed'} |")
    return "\n".join(lines)


def plot(summary: dict, path: Path) -> None:
    """Per dataset: AUROC minus FedAvg's (mean peer filled, worst peer hollow) against bytes."""
    fig, axes = plt.subplots(1, len(summary), figsize=(5 * len(summary), 4.5), squeeze=False)
    for ax, (d, rows) in zip(axes[0], summary.items()):
        for c, row in rows.items():
            colour = plt.cm.tab20(list(CONFIGS).index(c) % 20)  # one colour per configuration in every panel
            x = row["bytes_vs_fedavg"]
            ax.plot([x, x], [row["worst_minus_fedavg"], row["mean_minus_fedavg"]], color=colour, lw=1)
            ax.scatter([x], [row["mean_minus_fedavg"]], color=colour, label=c, zorder=3)
            ax.scatter([x], [row["worst_minus_fedavg"]], facecolors="none", edgecolors=colour, zorder=3)
        ax.axvline(BYTES_TARGET, color="grey", ls="--", lw=0.8)
        ax.axhline(-MEAN_TARGET, color="grey", ls="--", lw=0.8)
        ax.axhline(-WORST_TARGET, color="grey", ls=":", lw=0.8)
        ax.axhline(0, color="black", lw=0.5)
        ax.set_xscale("log")
        ax.set_xticks([0.25, 0.5, 1, 1.5, 2, 3, 4, 6, 8])
        ax.xaxis.set_major_formatter(FormatStrFormatter("%gx"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("bytes per peer / FedAvg's")
        ax.set_ylabel("AUROC - FedAvg (filled: mean peer, hollow: worst)")
        ax.set_title(d)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    """Run the missing runs (in ``--jobs`` processes), then write JSON + PNG and print a table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 (default 5)")
    parser.add_argument("--data", default=",".join(DATASETS))
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--report-only", action="store_true",
                        help="run nothing: summarise the runs already in --out (any seeds found)")
    parser.add_argument("--out", type=Path, default=Path("results/bench_efficiency.json"))
    args = parser.parse_args()
    datasets = [d for d in args.data.split(",") if d]
    configs = [c for c in args.configs.split(",") if c]
    unknown = [c for c in configs if c not in CONFIGS] + [d for d in datasets if d not in DATASETS]
    if unknown:
        raise SystemExit(f"bench_efficiency: unknown {', '.join(unknown)}")
    seeds = list(range(args.seeds))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    runs: list[dict] = json.loads(args.out.read_text())["runs"] if args.out.exists() else []
    done = {_key(r) for r in runs}
    if args.report_only:
        seeds = sorted({r["seed"] for r in runs})
    todo = [] if args.report_only else [(d, s, c) for d in datasets for s in seeds for c in [None, *configs]
                                        if (d, s, c or "fedavg") not in done]
    console = Console()
    start = time.perf_counter()

    def save() -> dict:
        report = {"runs": runs, "summary": aggregate(runs, datasets, seeds, configs),
                  "targets": {"mean": MEAN_TARGET, "worst": WORST_TARGET, "bytes": BYTES_TARGET},
                  "configs": {c: dict(zip(FIELDS, CONFIGS[c])) for c in configs},
                  "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "jobs": args.jobs}}
        atomic_write(args.out, json.dumps(report, indent=2) + "\n")
        return report

    with Progress(console=console) as progress, ProcessPoolExecutor(max(1, args.jobs)) as pool:
        task = progress.add_task("runs", total=len(todo))
        futures = [pool.submit(run_one, *job) for job in todo]
        for future in as_completed(futures):
            runs.append(future.result())
            save()
            progress.advance(task)
    report = save()
    plot(report["summary"], args.out.with_suffix(".png"))
    table = Table(title="AUROC - FedAvg (mean peer / worst peer) and bytes vs FedAvg, paired seeds")
    for col in ("data", "config", "seeds", "mean", "worst", "bytes", "target"):
        table.add_column(col, justify="right")
    for d, rows in report["summary"].items():
        for c, row in rows.items():
            table.add_row(d, c, ",".join(map(str, row["seeds"])), f"{row['mean_minus_fedavg']:+.3f}", f"{row['worst_minus_fedavg']:+.3f}",
                          f"{row['bytes_vs_fedavg']:.2f}x", "met" if row["meets_target"] else "missed")
    console.print(table)
    print(markdown(report["summary"]))
    console.print(f"wrote {args.out} and {args.out.with_suffix('.png')} in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
