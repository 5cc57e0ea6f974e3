"""Benchmark: how the swarm arm's cost grows with the number of simulated peers.

pneumoniamnist, IID, exponential graph, 3 gossip steps, no early stop. Each size runs in
its own subprocess (so its peak RSS is its own): the swarm arm, then the FedAvg arm on the
same federation. Per size: wall seconds per round of each arm, peak RSS, control bytes and
model bytes per peer per round, and the share of the swarm's round that is not training
(wall minus the training time, not a sum of timers), with the timers that explain it
(codec, averaging, evaluation). Targets (issue 11): at 1,000 peers, 5 rounds finish; the
per-peer control bytes per round stay within 2x of the 8-peer figure; peak RSS under
8 GiB; swarm wall per round under 10x FedAvg's.

Evaluation is kept out of the way with ``--eval-every`` (only the last round is scored on
the global test set); the per-round local validation every peer needs for its convergence
vote still runs and is reported as ``eval_s``.

Writes ``results/bench_scale.json`` and ``results/bench_scale.png`` (``--tag`` adds a suffix).

    PYTHONPATH=. .venv/bin/python scripts/bench_scale.py                        # 8 64 256 1000, 5 rounds
    PYTHONPATH=. .venv/bin/python scripts/bench_scale.py --sizes 8,64,200 --rounds 3 \
        --code /work/main --tag before                                         # the code in another tree
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

CONTROL_RATIO_TARGET = 2.0
RSS_TARGET_GIB = 8.0
FEDAVG_RATIO_TARGET = 10.0
HERE = Path(__file__).resolve().parent


def _cpu() -> float:
    """CPU seconds of this process so far (user + system): a figure a loaded machine's other
    processes do not inflate, unlike the wall time."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_one(peers: int, rounds: int, seed: int) -> dict:
    """One size in this process: the swarm arm, then FedAvg; the figures as a dict."""
    import torch

    from swarm.config import LearningConfig, OutputConfig, SimSetup
    from swarm.simulate import SimConfig, Simulation
    import swarm.virtual_swarm as vs

    torch.set_num_threads(1)
    captured: list = []
    original_run = vs.VirtualSwarm.run

    def capture(self, progress=None):  # keeps the swarm to read its traffic counters
        captured.append(self)
        return original_run(self, progress)

    vs.VirtualSwarm.run = capture
    config = SimConfig(
        setup=SimSetup(peers=peers, topology="exponential", arms=("swarm", "fedavg")),
        learning=LearningConfig(data="pneumoniamnist", partition="iid", rounds=rounds, gossip_steps=3,
                                seed=seed, converge=False),
        output=OutputConfig(eval_every=rounds, quiet=True),
    )
    start = time.perf_counter()
    sim = Simulation(config)
    setup_s = time.perf_counter() - start
    start, cpu = time.perf_counter(), _cpu()
    swarm_res = sim.run_swarm()
    swarm_s, swarm_cpu = time.perf_counter() - start, _cpu() - cpu
    swarm = captured[0]
    rss_swarm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    control = sum(p.traffic.control_bytes for p in swarm.peers)
    model = sum(p.served_bytes for p in swarm.peers)
    done = [p.run.last_round + 1 for p in swarm.peers]
    events = swarm.events
    del swarm, captured[:]
    start, cpu = time.perf_counter(), _cpu()
    fedavg_res = sim.run_fedavg()
    fedavg_s, fedavg_cpu = time.perf_counter() - start, _cpu() - cpu
    timings = swarm_res.timings
    train_s = timings["train_s"]
    return {
        "peers": sim.n,
        "rounds": rounds,
        "min_rounds_done": min(done),
        "setup_s": setup_s,
        "swarm_wall_s": swarm_s,
        "swarm_wall_per_round_s": swarm_s / rounds,
        "swarm_cpu_s": swarm_cpu,
        "fedavg_cpu_s": fedavg_cpu,
        "swarm_over_fedavg_cpu": swarm_cpu / fedavg_cpu,
        "swarm_timings": timings,
        "non_training_share": (swarm_s - train_s) / swarm_s,
        "events": events,
        "events_per_peer_per_round": events / sim.n / rounds,
        "control_bytes_per_peer_per_round": control / sim.n / rounds,
        "model_bytes_per_peer_per_round": model / sim.n / rounds,
        "fedavg_wall_s": fedavg_s,
        "fedavg_wall_per_round_s": fedavg_s / rounds,
        "fedavg_train_s": fedavg_res.timings["train_s"],
        "swarm_over_fedavg": swarm_s / fedavg_s,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_rss_after_swarm_mib": rss_swarm,
        "stop_reasons": sorted({r for r in (p.get("stop_reason") for p in swarm_res.extra["peers"]) if r}),
    }


def with_parts(result: dict) -> dict:
    """``result`` with the swarm's wall time split into its parts (the rest is the protocol,
    control plane and event loop: wall minus the timed work) and the dominant one."""
    if "error" in result or "swarm_timings" not in result:
        return result
    t = result["swarm_timings"]
    parts = {"training": t["train_s"], "codec": t["codec_s"], "averaging": t["averaging_s"],
             "evaluation": t["eval_s"]}
    parts["protocol and event loop (the rest)"] = result["swarm_wall_s"] - sum(parts.values())
    return {**result, "swarm_parts_s": parts, "dominant": max(parts, key=lambda k: parts[k])}


def run_one_fake(peers: int, rounds: int, seed: int) -> dict:
    """The control plane alone at ``peers``: the swarm arm's protocol, codec, signatures and
    event loop with the fake trainer of the tests (4 floats per model, instant training), so
    the wall time is nearly all protocol. Same graph, gossip steps, timing and faults."""
    import dataclasses

    from swarm.config import LearningConfig, TimingConfig, protocol_config
    from swarm.faults import FaultConfig
    from swarm.topology import build_topology
    from swarm.virtual_swarm import VirtualSwarm
    from tests.fakes import FakeTrainer, fake_federation

    learning = LearningConfig(data="fake", partition="iid", gossip_steps=3, rounds=rounds, seed=seed,
                              converge=False)
    config = protocol_config(learning, TimingConfig())
    config = dataclasses.replace(config, convergence=dataclasses.replace(config.convergence,
                                                                         min_rounds=rounds + 1))
    trainer = FakeTrainer(peers, seed)
    swarm = VirtualSwarm(trainer, fake_federation(peers, seed), build_topology("exponential", peers, seed=seed),
                         trainer.initial_weights(seed), config, FaultConfig(), seed=seed,
                         train_seed=lambda site, r: site * 1009 + r, eval_every=rounds, max_events=50_000_000)
    start, cpu = time.perf_counter(), _cpu()
    runs = swarm.run()
    wall, cpu = time.perf_counter() - start, _cpu() - cpu
    control = sum(p.traffic.control_bytes for p in swarm.peers)
    return {
        "peers": peers, "rounds": rounds, "trainer": "fake",
        "min_rounds_done": min(r.last_round + 1 for r in runs),
        "wall_s": wall, "wall_per_round_s": wall / rounds, "cpu_s": cpu, "cpu_per_round_s": cpu / rounds,
        "cpu_per_peer_round_ms": 1000 * cpu / rounds / peers,
        "wall_per_peer_round_ms": 1000 * wall / rounds / peers,
        "events": swarm.events, "events_per_peer_per_round": swarm.events / peers / rounds,
        "control_bytes_per_peer_per_round": control / peers / rounds,
        "degree": sum(len(v) for v in swarm.topology.values()) / peers,
        "control_bytes_per_edge_per_round": control / sum(len(v) for v in swarm.topology.values()) / rounds,
        "virtual_s_per_round": swarm.now / rounds,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def spawn(peers: int, rounds: int, seed: int, code: Path, timeout: float, fake: bool = False) -> dict:
    """Run one size in a subprocess importing the code under ``code``; its figures or the error."""
    env = {**os.environ, "PYTHONPATH": str(code)}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--one", str(peers), "--rounds", str(rounds),
           "--seed", str(seed), *(["--trainer", "fake"] if fake else [])]
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"peers": peers, "rounds": rounds, "error": f"timeout after {timeout:.0f} s"}
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
        return {"peers": peers, "rounds": rounds, "error": tail, "wall_s": time.perf_counter() - start}
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return result if fake else with_parts(result)


def plot(results: list[dict], path: Path) -> None:
    """Wall per round (swarm vs FedAvg), control and model bytes per peer per round, peak RSS."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in results if "error" not in r]
    n = [r["peers"] for r in ok]
    fig, axes = plt.subplots(1, 4, figsize=(18, 4))
    bottom = [0.0] * len(ok)
    for part in (ok[0]["swarm_parts_s"] if ok else {}):
        values = [r["swarm_parts_s"][part] / r["rounds"] for r in ok]
        axes[3].bar([str(p) for p in n], values, bottom=bottom, label=part)
        bottom = [b + v for b, v in zip(bottom, values)]
    axes[3].set(xlabel="peers", ylabel="wall s per round", title="swarm round, by part")
    axes[3].legend(fontsize=7)
    axes[0].plot(n, [r["swarm_wall_per_round_s"] for r in ok], "o-", label="swarm")
    axes[0].plot(n, [r["fedavg_wall_per_round_s"] for r in ok], "s-", label="FedAvg")
    axes[0].set(xscale="log", yscale="log", xlabel="peers", ylabel="wall s per round", title="wall per round")
    axes[0].legend()
    axes[1].plot(n, [r["control_bytes_per_peer_per_round"] for r in ok], "o-", label="control")
    axes[1].plot(n, [r["model_bytes_per_peer_per_round"] for r in ok], "s-", label="model")
    axes[1].set(xscale="log", yscale="log", xlabel="peers", ylabel="bytes per peer per round",
                title="traffic per peer per round")
    axes[1].legend()
    axes[2].plot(n, [r["peak_rss_mib"] / 1024 for r in ok], "o-")
    axes[2].axhline(RSS_TARGET_GIB, color="red", ls="--", label="target")
    axes[2].set(xscale="log", xlabel="peers", ylabel="GiB", title="peak RSS")
    axes[2].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def control_targets(results: list[dict]) -> dict:
    """The control plane's figures at the largest size against the smallest (fake trainer)."""
    ok = {r["peers"]: r for r in results if "error" not in r}
    if not ok:
        return {}
    base, big = ok[min(ok)], ok[max(ok)]
    ratio = big["control_bytes_per_peer_per_round"] / base["control_bytes_per_peer_per_round"]
    edge = big["control_bytes_per_edge_per_round"] / base["control_bytes_per_edge_per_round"]
    return {
        "largest_peers": big["peers"], "largest_rounds_done": big["min_rounds_done"],
        "control_ratio_vs_smallest": ratio, "control_per_edge_ratio_vs_smallest": edge,
        "degree_ratio_vs_smallest": big["degree"] / base["degree"],
        f"control within {CONTROL_RATIO_TARGET}x of {base['peers']} peers": ratio <= CONTROL_RATIO_TARGET,
        f"peak RSS under {RSS_TARGET_GIB} GiB": big["peak_rss_mib"] / 1024 < RSS_TARGET_GIB,
    }


def plot_control(results: list[dict], path: Path) -> None:
    """Control bytes per peer and per edge per round, and protocol wall per peer-round."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in results if "error" not in r]
    n = [r["peers"] for r in ok]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    axes[0].plot(n, [r["control_bytes_per_peer_per_round"] for r in ok], "o-", label="per peer")
    axes[0].plot(n, [r["control_bytes_per_edge_per_round"] for r in ok], "s-", label="per edge")
    axes[0].set(xscale="log", yscale="log", xlabel="peers", ylabel="control bytes per round",
                title="control traffic (fake trainer)")
    axes[0].legend()
    axes[1].plot(n, [r["cpu_per_peer_round_ms"] for r in ok], "o-", label="CPU")
    axes[1].plot(n, [r["cpu_per_peer_round_ms"] / r["degree"] for r in ok], "s-", label="CPU per edge")
    axes[1].set(xscale="log", xlabel="peers", ylabel="ms per peer-round",
                title="protocol cost (CPU: a loaded machine inflates the wall)")
    axes[1].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def targets(results: list[dict]) -> dict:
    """The issue's targets, checked on the largest finished size against the 8-peer run."""
    ok = {r["peers"]: r for r in results if "error" not in r}
    if not ok:
        return {}
    base = ok.get(min(ok))
    big = ok[max(ok)]
    ratio = big["control_bytes_per_peer_per_round"] / base["control_bytes_per_peer_per_round"]
    return {
        "largest_peers": big["peers"],
        "largest_rounds_done": big["min_rounds_done"],
        "control_ratio_vs_smallest": ratio,
        f"control within {CONTROL_RATIO_TARGET}x of {base['peers']} peers": ratio <= CONTROL_RATIO_TARGET,
        f"peak RSS under {RSS_TARGET_GIB} GiB": big["peak_rss_mib"] / 1024 < RSS_TARGET_GIB,
        f"wall per round under {FEDAVG_RATIO_TARGET}x FedAvg": big["swarm_over_fedavg"] < FEDAVG_RATIO_TARGET,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="8,64,256,1000", help="comma-separated peer counts")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--code", type=Path, default=HERE.parent, help="source tree the runs import")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per size")
    parser.add_argument("--tag", default="", help="suffix of the output files")
    parser.add_argument("--out", type=Path, default=HERE.parent / "results")
    parser.add_argument("--include", type=Path, action="append", default=[],
                        help="a report of an earlier run whose sizes join this one's (repeatable)")
    parser.add_argument("--trainer", choices=("real", "fake"), default="real",
                        help="fake: the control plane alone (the tests' fake trainer, no FedAvg arm)")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:
        run = run_one_fake if args.trainer == "fake" else run_one
        print(json.dumps(run(args.one, args.rounds, args.seed)))
        return 0
    try:
        sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        parser.error(f"--sizes: not a list of integers: {args.sizes!r}")
    from rich.console import Console
    from rich.progress import Progress

    console = Console(stderr=True)
    results = []
    with Progress(console=console) as progress:
        task = progress.add_task("sizes", total=len(sizes))
        for size in sizes:
            progress.update(task, description=f"{size} peers")
            result = spawn(size, args.rounds, args.seed, args.code, args.timeout, args.trainer == "fake")
            results.append(result)
            console.print(json.dumps(result), soft_wrap=True)
            progress.advance(task)
    for path in args.include:
        try:
            earlier = json.loads(path.read_text())["results"]
        except (OSError, ValueError, KeyError) as err:
            parser.error(f"--include {path}: {err}")
        results += [with_parts(r) for r in earlier if r["peers"] not in {x["peers"] for x in results}]
    results.sort(key=lambda r: r["peers"])
    commit = subprocess.run(["git", "-C", str(args.code), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    report = {
        "config": {"data": "pneumoniamnist", "partition": "iid", "topology": "exponential", "gossip_steps": 3,
                   "rounds": args.rounds, "seed": args.seed, "eval_every": args.rounds, "converge": False,
                   "code": str(args.code), "commit": commit},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "results": results,
        "targets": control_targets(results) if args.trainer == "fake" else targets(results),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "bench_scale" + ("_control" if args.trainer == "fake" else "") + (f"_{args.tag}" if args.tag else "")
    from swarm.atomic_file import atomic_write

    if args.trainer == "fake":
        report["config"]["trainer"] = "fake (tests/fakes.py): the control plane alone"
    atomic_write(args.out / f"{stem}.json", json.dumps(report, indent=2).encode())
    (plot_control if args.trainer == "fake" else plot)(results, args.out / f"{stem}.png")
    console.print(json.dumps(report["targets"], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
