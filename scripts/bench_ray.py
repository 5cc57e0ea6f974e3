"""Benchmark: the cost of ``medswarm simulate --ray`` on a small run (issue 11).

The same small simulation (pneumoniamnist, IID, exponential graph, swarm and FedAvg arms)
runs without Ray, then with ``--ray`` against a local cluster of two processes (``ray
start --head`` on loopback plus one worker node, one CPU each, started before timing as a
cluster would be), twice: *cold* (the workers start, unpack the code and import torch)
and *warm*. Every Ray run must give the run without Ray exactly (per-peer figures and the
swarm's weights digest); the figure is the wall-time ratio and the overhead in seconds
(wall with Ray minus wall without, the work being the same). The run without Ray is timed
before and after the Ray runs and averaged, to even out a shared machine's load.

Writes ``results/bench_ray.json`` and ``results/bench_ray.png``.

    nice -n 10 .venv/bin/python scripts/bench_ray.py              # 8 peers, 3 rounds
    nice -n 10 .venv/bin/python scripts/bench_ray.py --peers 16 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ["RAY_AUTH_MODE"] = "token"  # read when ray is imported; the local cluster uses tokens

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from rich.console import Console  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from swarm.atomic_file import atomic_write  # noqa: E402
from swarm.config import LearningConfig, OutputConfig, SimSetup  # noqa: E402
from swarm.ray_cluster import LocalRayCluster  # noqa: E402
from swarm.simulate import Simulation, SimConfig  # noqa: E402


def timed_run(args: argparse.Namespace, ray: str | None) -> dict:
    """One simulation; wall time of ``run()`` (Ray's connect and uploads included)."""
    config = SimConfig(setup=SimSetup(peers=args.peers, topology="exponential", arms=("swarm", "fedavg"), ray=ray),
                       learning=LearningConfig(data=args.data, partition="iid", rounds=args.rounds, converge=False,
                                               seed=args.seed),
                       output=OutputConfig(eval_every=args.rounds))
    sim = Simulation(config)
    start = time.perf_counter()
    results = sim.run()
    wall = time.perf_counter() - start
    return {"wall_s": wall, "training": sim.training,
            "train_s": sum(r.timings.get("train_s", 0.0) for r in results),
            "per_site": {r.arm: r.per_site for r in results}, "rows": {r.arm: r.rows for r in results},
            "digest": results[0].extra["weights_digest"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--peers", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--data", default="pneumoniamnist")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "bench_ray.json")
    args = parser.parse_args()
    console = Console(stderr=True)
    torch.set_num_threads(1)  # as medswarm simulate and every Ray task
    console.print("without Ray ...")
    local = [timed_run(args, None)]
    with LocalRayCluster(workers=1, cpus=1) as address:
        console.print(f"cluster at {address}: cold run ...")
        cold = timed_run(args, address)
        console.print("warm run ...")
        warm = timed_run(args, address)
    console.print("without Ray again ...")
    local.append(timed_run(args, None))
    base = sum(r["wall_s"] for r in local) / len(local)
    same = all(r["per_site"] == local[0]["per_site"] and r["rows"] == local[0]["rows"]
               and r["digest"] == local[0]["digest"] for r in (local[1], cold, warm))

    def entry(run: dict) -> dict:
        return {"wall_s": run["wall_s"], "ratio": run["wall_s"] / base, "overhead_s": run["wall_s"] - base,
                "train_s": run["train_s"], "training": run["training"]}

    result = {
        "run": {"data": args.data, "partition": "iid", "topology": "exponential", "peers": args.peers,
                "rounds": args.rounds, "arms": ["swarm", "fedavg"], "seed": args.seed},
        "cluster": "ray start --head on 127.0.0.1 + one ray start --address worker node, 1 CPU each",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "without_ray": {"wall_s": base, "walls_s": [r["wall_s"] for r in local], "train_s": local[0]["train_s"]},
        "ray_cold": entry(cold),
        "ray_warm": entry(warm),
        "same_result": same,
        "swarm_weights_digest": local[0]["digest"],
    }
    atomic_write(args.out, json.dumps(result, indent=2) + "\n")
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    labels, walls = ["without Ray", "Ray (cold)", "Ray (warm)"], [base, cold["wall_s"], warm["wall_s"]]
    ax.bar(labels, walls, color=["#999999", "#b07a2a", "#2a7ab0"])
    for i, w in enumerate(walls):
        ax.text(i, w, f"{w:.0f} s (x{w / base:.2f})", ha="center", va="bottom")
    ax.set_ylabel("wall s")
    ax.set_title(f"{args.peers} peers, {args.rounds} rounds, {args.data}: same result = {same}")
    fig.tight_layout()
    fig.savefig(args.out.with_suffix(".png"), dpi=120)
    plt.close(fig)
    console.print(f"without Ray {base:.1f} s; Ray cold {cold['wall_s']:.1f} s (x{cold['wall_s'] / base:.2f}), "
                  f"warm {warm['wall_s']:.1f} s (x{warm['wall_s'] / base:.2f}); same result: {same}")
    console.print(f"wrote {args.out} and {args.out.with_suffix('.png')}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
