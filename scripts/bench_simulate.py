"""Benchmark: swarm vs fedavg / local / central / cwt on real MedMNIST, and scaling with peers.

Learning figures are paired over seeds (same splits, init and training seeds in every
arm) and taken on the mean of the last 5 rounds; the worst peer is reported beside the
mean. Scaling runs only the swarm arm and reports the wall time per round per peer and
the share of it that is not training (codec + averaging; the virtual clock times the
exchanges, they cost no wall time).

Writes ``results/bench_simulate.json`` and ``results/bench_simulate.png``.

    .venv/bin/python scripts/bench_simulate.py            # full: 3 seeds, both sets, 8..64 peers
    .venv/bin/python scripts/bench_simulate.py --quick    # 1 seed, breastmnist, 8/16 peers
"""

from __future__ import annotations

import argparse
import json
import os
import platform
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
from swarm.config import ARMS, LearningConfig, OutputConfig, SimSetup  # noqa: E402
from swarm.arm_results import summarize  # noqa: E402
from swarm.simulate import Simulation, SimConfig  # noqa: E402

FEDAVG_GAP_TARGET = 0.03
NON_TRAINING_TARGET = 0.10


def learning(dataset: str, seeds: list[int], rounds: int, progress: Progress) -> dict:
    """All arms on one dataset for each seed; paired differences swarm-fedavg and swarm-local."""
    per_seed = []
    task = progress.add_task(f"{dataset} arms", total=len(seeds) * len(ARMS) * rounds)
    for seed in seeds:
        # same rounds as fedavg
        config = SimConfig(learning=LearningConfig(data=dataset, seed=seed, rounds=rounds, converge=False))
        start = time.perf_counter()
        results = Simulation(config).run(lambda arm, done, total: progress.advance(task))
        summary = summarize(results)
        per_seed.append({
            "seed": seed,
            "wall_s": time.perf_counter() - start,
            "arms": {arm: {k: summary[arm][k] for k in ("auroc", "worst_auroc", "accuracy", "bytes_sent")}
                     for arm in summary},
            "swarm_mean_model_auroc": summary["swarm"]["mean_model"]["auroc"],
        })

    def stat(values: list[float]) -> dict:
        arr = np.array(values, dtype=float)
        return {"mean": float(arr.mean()), "std": float(arr.std(ddof=1)) if len(arr) > 1 else 0.0,
                "per_seed": [float(v) for v in arr]}

    arms = {arm: {"auroc": stat([s["arms"][arm]["auroc"] for s in per_seed]),
                  "worst_auroc": stat([s["arms"][arm]["worst_auroc"] for s in per_seed]),
                  "accuracy": stat([s["arms"][arm]["accuracy"] for s in per_seed])}
            for arm in ARMS}
    gap = stat([s["arms"]["fedavg"]["auroc"] - s["arms"]["swarm"]["auroc"] for s in per_seed])
    over_local = stat([s["arms"]["swarm"]["auroc"] - s["arms"]["local"]["auroc"] for s in per_seed])
    return {
        "config": {"data": dataset, "peers": 8, "partition": "dirichlet:0.5", "topology": SimSetup().topology,
                   "compress": LearningConfig().compress, "final_agreement": LearningConfig().final_agreement,
                   "rounds": rounds, "gossip_steps": LearningConfig().gossip_steps, "seeds": seeds},
        "arms": arms,
        "fedavg_minus_swarm_auroc": gap,
        "swarm_minus_local_auroc": over_local,
        "targets": {
            f"swarm within {FEDAVG_GAP_TARGET} AUROC of fedavg": gap["mean"] <= FEDAVG_GAP_TARGET,
            "swarm above local": over_local["mean"] > 0,
        },
        "per_seed": per_seed,
    }


def scaling(peer_counts: list[int], rounds: int, progress: Progress) -> list[dict]:
    """Swarm arm only on pneumoniamnist: time per round per peer and the non-training share."""
    out = []
    task = progress.add_task("scaling", total=sum(peer_counts) * 0 + len(peer_counts) * rounds)
    for peers in peer_counts:
        # IID here: scaling measures time, and Dirichlet(0.5) over two classes cannot give
        # 64 sites at least 10 images each
        config = SimConfig(setup=SimSetup(peers=peers, arms=("swarm",)),
                           learning=LearningConfig(data="pneumoniamnist", rounds=rounds, seed=0, partition="iid",
                                                   converge=False),
                           output=OutputConfig(eval_every=rounds))
        sim = Simulation(config)
        start = time.perf_counter()
        (result,) = sim.run(lambda arm, done, total: progress.advance(task))
        wall = time.perf_counter() - start
        t = result.timings
        work = t["train_s"] + t["codec_s"] + t["averaging_s"]
        non_training = (t["codec_s"] + t["averaging_s"]) / work
        out.append({
            "peers": peers,
            "rounds": rounds,
            "wall_s": wall,
            "eval_s": t["eval_s"],
            "per_round_per_peer_s": work / rounds / peers,
            "non_training_share": non_training,
            "breakdown_s": {k: t[k] for k in ("train_s", "codec_s", "averaging_s")},
            "target_non_training_under_10pct": non_training < NON_TRAINING_TARGET,
        })
    return out


def plot(report: dict, path: Path) -> None:
    """Bars of each arm's AUROC (mean over seeds, error bar = std) and the scaling curve."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    width = 0.8 / max(len(report["learning"]), 1)
    for k, (name, res) in enumerate(report["learning"].items()):
        means = [res["arms"][a]["auroc"]["mean"] for a in ARMS]
        stds = [res["arms"][a]["auroc"]["std"] for a in ARMS]
        axes[0].bar(np.arange(len(ARMS)) + k * width, means, width, yerr=stds, label=name, capsize=3)
    axes[0].set_xticks(np.arange(len(ARMS)) + width * (len(report["learning"]) - 1) / 2, ARMS)
    axes[0].set_ylim(0.4, 1.0)
    axes[0].set_ylabel("global test AUROC (last 5 rounds)")
    axes[0].set_title("Arms, 8 peers, Dirichlet(0.5), ring")
    axes[0].legend()
    sc = report["scaling"]
    if sc:
        peers = [s["peers"] for s in sc]
        axes[1].plot(peers, [100 * s["non_training_share"] for s in sc], "o-", label="non-training share (%)")
        axes[1].axhline(100 * NON_TRAINING_TARGET, color="grey", linestyle="--", label="target")
        axes[1].set_xscale("log", base=2)
        axes[1].set_xlabel("peers")
        axes[1].set_ylabel("% of round time")
        ax2 = axes[1].twinx()
        ax2.plot(peers, [1000 * s["per_round_per_peer_s"] for s in sc], "s-", color="C1",
                 label="ms per round per peer")
        ax2.set_ylabel("ms per round per peer")
        axes[1].legend(loc="upper left")
        ax2.legend(loc="upper right")
        axes[1].set_title("Scaling on pneumoniamnist (swarm arm)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    """Run the benchmark and write JSON + PNG."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, breastmnist only, 8/16 peers")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--scaling-rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("results/bench_simulate.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    seeds = [0] if args.quick else list(range(args.seeds))
    datasets = ["breastmnist"] if args.quick else ["breastmnist", "pneumoniamnist"]
    peer_counts = [8, 16] if args.quick else [8, 16, 32, 64]
    console = Console()
    start = time.perf_counter()
    report: dict = {"learning": {}, "scaling": []}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with Progress(console=console) as progress:
        for d in datasets:
            report["learning"][d] = learning(d, seeds, args.rounds, progress)
            atomic_write(args.out, json.dumps(report, indent=2) + "\n")  # keep partial results
        report["scaling"] = scaling(peer_counts, args.scaling_rounds, progress)
    report["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(),
                         "torch": torch.__version__, "torch_threads": torch.get_num_threads()}
    report["wall_s"] = time.perf_counter() - start
    atomic_write(args.out, json.dumps(report, indent=2) + "\n")
    plot(report, args.out.with_suffix(".png"))

    table = Table(title="swarm vs references (AUROC, mean ± std over seeds, last 5 rounds)")
    table.add_column("data")
    for arm in ARMS:
        table.add_column(arm, justify="right")
    table.add_column("fedavg−swarm", justify="right")
    for name, res in report["learning"].items():
        table.add_row(name, *[f"{res['arms'][a]['auroc']['mean']:.3f}±{res['arms'][a]['auroc']['std']:.3f}"
                              for a in ARMS],
                      f"{res['fedavg_minus_swarm_auroc']['mean']:+.3f}")
    console.print(table)
    sc = Table(title="scaling (pneumoniamnist, swarm)")
    for col in ("peers", "ms/round/peer", "non-training %"):
        sc.add_column(col, justify="right")
    for s in report["scaling"]:
        sc.add_row(str(s["peers"]), f"{1000 * s['per_round_per_peer_s']:.1f}", f"{100 * s['non_training_share']:.1f}")
    console.print(sc)
    console.print(f"wrote {args.out} and {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
