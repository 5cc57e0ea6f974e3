"""Benchmark: hostile members against plain and robust mixing, on BreastMNIST, small-world.

``--topology``, ``--compress`` and ``--final-agreement`` change the swarm every run uses
(default: small-world, whole float32 models, no final agreement), e.g. the one-peer
exponential graph with 8-bit models and one final-agreement round.

For every attack kind (``swarm.attacks``), setup (8 peers with 1 attacker, 16 with 1, 16
with 2) and aggregator (``clipped``: robust mixing; ``mean``: plain gossip, the positive
control), the honest peers' AUROC with the attack minus the same seed's run without the
attackers: the same split, initial weights and training seeds, the attackers' hospitals
down from round 0 (``--crash PEER@0``), scored on the same honest peers. That is what a
defence can at best give back: a hostile hospital's data is lost to the swarm whatever the
defence. Each row also gives the change against the run in which the attackers' hospitals
take part honestly (``vs_member``: that loss of data included). Both
sides are each honest peer's global-test AUROC averaged over the run's last 5 evaluated
rounds, then the mean over the honest peers and the worst of them. Runs stop as users'
runs do (the convergence vote, ``--rounds`` the fallback; ``--no-converge`` runs all
rounds), so an attack that stops the swarm early is scored on the rounds it let it reach.

Targets: with robust mixing, every attack within 0.03 of no attack (mean over seeds, for
the honest mean and for the worst honest peer); with ``mean`` the attacks should hurt
(loss beyond 0.03). Without any attacker, robust mixing against ``mean``: AUROC within
0.01 and wall time per round within 1.1x (both arms interleaved, so load hits them alike).

Writes ``results/bench_attacks.json`` and ``.png`` beside it, and prints a markdown table.

    .venv/bin/python scripts/bench_attacks.py [--jobs 2] [--seeds 0,1,2] [--rounds 20]
    .venv/bin/python scripts/bench_attacks.py --smoke --out /tmp/bench_attacks.json  # seconds
    .venv/bin/python scripts/bench_attacks.py --setups 8:1 --aggregators clipped --topology onepeer-exp \
        --compress q8 --final-agreement 1 --out results/bench_attacks_onepeer_8_1.json
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import platform
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Iterator

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.progress import (BarColumn, Progress, TaskProgressColumn, TextColumn,  # noqa: E402
                           TimeElapsedColumn, TimeRemainingColumn)

from swarm.atomic_file import atomic_write  # noqa: E402
from swarm.attack_report import tail_auroc  # noqa: E402
from swarm.attacks import parse_attack  # noqa: E402
from swarm.config import LearningConfig, SimSetup, default_partition  # noqa: E402
from swarm.errors import ConfigError  # noqa: E402
from swarm.faults import FaultConfig, parse_crash  # noqa: E402
from swarm.robust import AGGREGATORS  # noqa: E402
from swarm.arm_results import summarize  # noqa: E402
from swarm.simulate import Simulation, SimConfig  # noqa: E402

#: every kind, with the parameter benchmarked (noise: 2.5x the RMS of BreastMNIST weights)
KINDS = ("signflip", "scale:5", "noise:0.05", "zeros", "alie", "catchup", "forge-stop", "forge-progress", "flood")
TOPOLOGY = "smallworld:4:0.2"
#: evaluated rounds averaged per peer, as the simulation's report does
LAST = 5
#: the first attacker; more are spread evenly from it (3 and 11 of 16)
FIRST_ATTACKER = 3
ATTACK_TARGET = 0.03
COST_AUROC_TARGET = 0.01
COST_TIME_TARGET = 1.1
#: the plan's name for a run without the attackers (their hospitals down from round 0)
ABSENT = "absent"
#: ``--smoke``: the smallest run that still exercises every part (seconds on two cores)
SMOKE = {"data": "heart", "partition": "iid", "rounds": 3, "seeds": (0,), "kinds": ("signflip", "forge-stop"),
         "setups": "8:1"}


@dataclass(frozen=True)
class Setup:
    """A swarm of ``peers`` of which ``attackers`` are hostile."""

    peers: int
    attackers: int

    @property
    def label(self) -> str:
        """``8:1``, as ``--setups`` takes it."""
        return f"{self.peers}:{self.attackers}"

    def attacker_peers(self) -> tuple[int, ...]:
        """Peer 3, then spread evenly: the same in every seed and kind, so that each seed's
        no-attack run can be scored on the same honest peers."""
        return tuple(sorted({(FIRST_ATTACKER + i * self.peers // self.attackers) % self.peers
                             for i in range(self.attackers)}))


def parse_setups(text: str) -> tuple[Setup, ...]:
    """``8:1,16:2`` -> setups; each needs >= 1 attacker and at least one honest peer."""
    setups = []
    for part in text.split(","):
        try:
            peers, attackers = (int(x) for x in part.split(":"))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected PEERS:ATTACKERS, got {part!r}") from None
        if not 1 <= attackers < peers:
            raise argparse.ArgumentTypeError(f"{part!r}: need 1 <= attackers < peers")
        setups.append(Setup(peers, attackers))
    return tuple(setups)


def parse_kinds(text: str) -> tuple[str, ...]:
    """``signflip,scale:5`` -> kinds, each checked as ``swarm.attacks`` parses it."""
    kinds = tuple(k.strip() for k in text.split(",") if k.strip())
    for kind in kinds:
        try:
            parse_attack(f"0:{kind}")
        except ConfigError as err:
            raise argparse.ArgumentTypeError(str(err)) from None
    return kinds


def parse_aggregators(text: str) -> tuple[str, ...]:
    """``mean,clipped`` -> aggregators (``mean`` is the reference of the cost figures)."""
    names = tuple(a.strip() for a in text.split(",") if a.strip())
    unknown = [a for a in names if a not in AGGREGATORS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"expected some of {', '.join(AGGREGATORS)}, got {text!r}")
    return names


def parse_seeds(text: str) -> tuple[int, ...]:
    """``0,1,2`` -> seeds."""
    try:
        return tuple(int(s) for s in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


@dataclass(frozen=True)
class Job:
    """One simulation, the swarm arm only; ``kind`` None is a run without attack (``absent``: without the attackers)."""

    data: str
    partition: str
    rounds: int
    converge: bool
    peers: int
    aggregator: str
    seed: int
    kind: str | None = None
    attackers: tuple[int, ...] = ()
    corroboration: int = LearningConfig.corroboration
    clip_factor: float = LearningConfig.clip_factor
    #: the attackers' hospitals never take part (down from round 0): the run without them
    absent: bool = False
    topology: str = TOPOLOGY
    compress: str = LearningConfig.compress
    final_agreement: int = LearningConfig.final_agreement

    def config(self) -> SimConfig:
        """The simulation's config: users' defaults but for what the benchmark varies."""
        attacks = tuple(parse_attack(f"{peer}:{self.kind}") for peer in self.attackers) if self.kind else ()
        crashes = tuple(parse_crash(f"{peer}@0") for peer in self.attackers) if self.absent else ()
        return SimConfig(setup=SimSetup(peers=self.peers, topology=self.topology, arms=("swarm",)),
                         learning=LearningConfig(data=self.data, partition=self.partition, rounds=self.rounds,
                                                 seed=self.seed, aggregator=self.aggregator, converge=self.converge,
                                                 corroboration=self.corroboration, clip_factor=self.clip_factor,
                                                 compress=self.compress, final_agreement=self.final_agreement),
                         faults=FaultConfig(attacks=attacks, crashes=crashes))


def plan(setups: tuple[Setup, ...], kinds: tuple[str, ...], aggregators: tuple[str, ...],
         seeds: tuple[int, ...], **common) -> list[Job]:
    """Every run in the order they go: seed by seed (partial results cover whole seeds),
    aggregators innermost and in turn first (machine load hits each alike); each no-attack
    run once per (peers, aggregator, seed) (16:1 and 16:2 share theirs), each run without
    the attackers (``ABSENT``) once per setup, aggregator and seed."""
    jobs: list[Job] = []
    baselines = (None, ABSENT) if kinds else (None,)  # without kinds: the cost figures only
    groups = [(seed, setup, kind) for seed in seeds for setup in setups for kind in (*baselines, *kinds)]
    for i, (seed, setup, kind) in enumerate(groups):
        for aggregator in aggregators[::-1] if i % 2 else aggregators:  # neither always first
            job = Job(peers=setup.peers, aggregator=aggregator, seed=seed,
                      kind=None if kind in (None, ABSENT) else kind, absent=kind == ABSENT,
                      attackers=setup.attacker_peers() if kind else (), **common)
            if job not in jobs:
                jobs.append(job)
    return jobs


def run_job(job: Job) -> dict:
    """Run one simulation and keep what the summary needs (picklable: runs in workers).

    The wall time is that of ``Simulation.run``, not of building the split; rounds run is
    the highest round any peer reached, plus one.
    """
    simulation = Simulation(job.config())
    start = time.perf_counter()
    (result,) = simulation.run()
    wall = time.perf_counter() - start
    swarm = summarize([result], last=LAST)["swarm"]
    rounds_run = max(max(p["last_round"] for p in swarm["peers"]) + 1, 1)
    honest = swarm["attacks"]["honest"] if "attacks" in swarm else swarm
    return {
        **asdict(job),
        "attackers": list(job.attackers),
        "wall_s": wall,
        "rounds_run": rounds_run,
        "wall_s_per_round": wall / rounds_run,
        "last_rounds_auroc": tail_auroc(result.rows, range(job.peers), LAST),
        "reported_auroc": swarm["auroc"],  # the simulation's own headline (attackers left out): a cross-check
        "final_auroc": [site["auroc"] for site in result.per_site],
        "stop_rounds": swarm["decision"]["stop_rounds"],
        "reasons": swarm["decision"]["reasons"],
        "rejected_by_reason": honest["rejected_by_reason"],
        "timings": swarm["timings"],
    }


def quiet_single_thread() -> None:
    """One torch thread per simulation (faster on busy cores; the command line does the
    same) and only errors logged: a flood attack otherwise logs every refused message."""
    torch.set_num_threads(1)
    logging.getLogger("medswarm").setLevel(logging.ERROR)


@contextmanager
def benchmarking() -> Iterator[None]:
    """:func:`quiet_single_thread` in this process, undone afterwards (tests run in it)."""
    threads, level = torch.get_num_threads(), logging.getLogger("medswarm").level
    quiet_single_thread()
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        logging.getLogger("medswarm").setLevel(level)


def warm_up(job: Job) -> None:
    """One round of ``job``, untimed: the first simulation of a process pays for torch's
    first calls (about 1.5 s), which would be charged to whichever arm came first."""
    Simulation(replace(job, rounds=1, kind=None, attackers=()).config()).run()


def _init_worker(job: Job) -> None:
    quiet_single_thread()
    warm_up(job)


def execute(jobs: list[Job], workers: int) -> Iterator[dict]:
    """Each job's record as it completes: in this process, or in ``workers`` spawned ones
    (each warmed up first)."""
    if workers == 1:
        warm_up(jobs[0])
        yield from map(run_job, jobs)
        return
    with multiprocessing.get_context("spawn").Pool(workers, initializer=_init_worker, initargs=(jobs[0],)) as pool:
        yield from pool.imap_unordered(run_job, jobs, chunksize=1)


def key(record: dict) -> tuple:
    """A run's identity: (peers, aggregator, seed, kind, attackers); kind ``ABSENT`` for a
    run without the attackers."""
    kind = ABSENT if record.get("absent") else record["kind"]
    return record["peers"], record["aggregator"], record["seed"], kind, tuple(record["attackers"])


def honest_figures(record: dict, attackers: tuple[int, ...]) -> dict:
    """Mean and worst over the peers not in ``attackers``, of last-rounds and final AUROC."""
    def pick(values: list[float | None]) -> list[float]:
        return [v for i, v in enumerate(values) if i not in attackers and v is not None]

    tail, final = pick(record["last_rounds_auroc"]), pick(record["final_auroc"])
    nan = float("nan")
    return {"mean": float(np.mean(tail)) if tail else nan, "worst": min(tail, default=nan),
            "final_mean": float(np.mean(final)) if final else nan, "final_worst": min(final, default=nan)}


def over_seeds(values: list[float]) -> dict:
    """Mean over seeds, the largest loss (lowest value) and each seed's value."""
    return {"mean": float(np.mean(values)), "max_loss": float(min(values)), "per_seed": values}


def attack_row(runs: dict, setup: Setup, kind: str, aggregator: str, seeds: tuple[int, ...]) -> dict:
    """One (setup, kind, aggregator), paired by seed, on the honest peers: attacked minus the
    run without the attackers (``delta``, the target's), and minus the run in which they
    take part honestly (``vs_member``)."""
    attackers = setup.attacker_peers()
    per_seed = []
    for seed in seeds:
        record = runs[(setup.peers, aggregator, seed, kind, attackers)]
        hit = honest_figures(record, attackers)
        ref = honest_figures(runs[(setup.peers, aggregator, seed, ABSENT, attackers)], attackers)
        member = honest_figures(runs[(setup.peers, aggregator, seed, None, ())], attackers)
        per_seed.append({"seed": seed, "attacked": hit, "without_attackers": ref, "attackers_honest": member,
                         "delta": hit["mean"] - ref["mean"], "delta_worst": hit["worst"] - ref["worst"],
                         "delta_final": hit["final_mean"] - ref["final_mean"],
                         "vs_member": hit["mean"] - member["mean"], "vs_member_worst": hit["worst"] - member["worst"],
                         "stop_rounds": record["stop_rounds"], "rejected_by_reason": record["rejected_by_reason"]})
    row = {"setup": setup.label, "attackers": list(attackers), "kind": kind, "aggregator": aggregator,
           "delta": over_seeds([s["delta"] for s in per_seed]),
           "delta_worst": over_seeds([s["delta_worst"] for s in per_seed]),
           "vs_member": over_seeds([s["vs_member"] for s in per_seed]),
           "vs_member_worst": over_seeds([s["vs_member_worst"] for s in per_seed]),
           "per_seed": per_seed}
    within = row["delta"]["mean"] >= -ATTACK_TARGET and row["delta_worst"]["mean"] >= -ATTACK_TARGET
    if aggregator == "mean":
        row["hurts"] = not within  # the positive control
    else:
        row["within_target"] = within
    return row


def per_round_without_eval(record: dict) -> float:
    """Wall s per round without evaluating every peer each round (which dilutes the cost of mixing)."""
    return (record["wall_s"] - record["timings"]["eval_s"]) / record["rounds_run"]


def cost_row(runs: dict, peers: int, aggregator: str, seeds: tuple[int, ...]) -> dict:
    """Robust mixing without any attacker, against ``mean``: AUROC difference and time per
    round ratio (with and without evaluation), paired by seed, over all peers."""
    per_seed = []
    for seed in seeds:
        robust, plain = runs[(peers, aggregator, seed, None, ())], runs[(peers, "mean", seed, None, ())]
        a, b = honest_figures(robust, ()), honest_figures(plain, ())
        per_seed.append({"seed": seed, "delta": a["mean"] - b["mean"], "delta_worst": a["worst"] - b["worst"],
                         "time_ratio": robust["wall_s_per_round"] / plain["wall_s_per_round"],
                         "time_ratio_without_eval": per_round_without_eval(robust) / per_round_without_eval(plain),
                         "rounds_run": [robust["rounds_run"], plain["rounds_run"]]})
    row = {"peers": peers, "aggregator": aggregator,
           "delta": over_seeds([s["delta"] for s in per_seed]),
           "delta_worst": over_seeds([s["delta_worst"] for s in per_seed]),
           "time_per_round_ratio": float(np.mean([s["time_ratio"] for s in per_seed])),
           "time_per_round_ratio_without_eval": float(np.mean([s["time_ratio_without_eval"] for s in per_seed])),
           "per_seed": per_seed}
    row["within_auroc_target"] = row["delta"]["mean"] >= -COST_AUROC_TARGET
    row["within_time_target"] = row["time_per_round_ratio"] <= COST_TIME_TARGET
    return row


def summarize_runs(records: list[dict], setups: tuple[Setup, ...], kinds: tuple[str, ...],
                   aggregators: tuple[str, ...], seeds: tuple[int, ...]) -> dict:
    """The attack rows, the cost rows (if ``mean`` ran) and whether the targets are met."""
    runs = {key(r): r for r in records}
    rows = [attack_row(runs, s, k, a, seeds) for s in setups for k in kinds for a in aggregators]
    robust = [a for a in aggregators if a != "mean"]
    peer_counts = sorted({s.peers for s in setups})
    cost = [cost_row(runs, p, a, seeds) for p in peer_counts for a in robust] if "mean" in aggregators else []
    targets = {f"{a}: every attack within {ATTACK_TARGET} of no attack": all(
        r["within_target"] for r in rows if r["aggregator"] == a) for a in robust if rows}
    for a in robust if cost else ():
        targets[f"{a} without attacker: AUROC within {COST_AUROC_TARGET} of mean"] = all(
            c["within_auroc_target"] for c in cost if c["aggregator"] == a)
        targets[f"{a} without attacker: time per round within {COST_TIME_TARGET}x of mean"] = all(
            c["within_time_target"] for c in cost if c["aggregator"] == a)
    hurt = {s.label: [r["kind"] for r in rows if r["setup"] == s.label and r.get("hurts")] for s in setups}
    return {"attacks": rows, "cost_without_attacker": cost, "targets": targets,
            "positive_control_kinds_that_hurt_mean": hurt if "mean" in aggregators else {}}


def _signed(value: float) -> str:
    return f"{value:+.3f}".replace("-", "−")


def markdown(summary: dict, setups: tuple[Setup, ...], kinds: tuple[str, ...],
             aggregators: tuple[str, ...], jobs: int) -> str:
    """README table: a row per kind, a column per setup and aggregator, each cell the
    honest mean's / worst honest peer's AUROC change (mean over seeds); then the cost
    (times measured with ``jobs`` runs in parallel)."""
    cells = {(r["setup"], r["kind"], r["aggregator"]): r for r in summary["attacks"]}
    columns = [(s.label, a) for s in setups for a in aggregators]
    lines = []
    for name, field in (("without the attackers", "delta"), ("with the attackers' hospitals honest", "vs_member")):
        lines += [f"\nAgainst the run {name} (honest mean / worst honest peer):\n",
                  "| attack | " + " | ".join(f"{s} {a}" for s, a in columns) + " |", "|---|" + "---:|" * len(columns)]
        for kind in kinds:
            row = [cells[(s, kind, a)] for s, a in columns]
            worst = "delta_worst" if field == "delta" else "vs_member_worst"
            lines.append(f"| {kind} | " + " | ".join(f"{_signed(r[field]['mean'])} / {_signed(r[worst]['mean'])}"
                                                     for r in row) + " |")
    for c in summary["cost_without_attacker"]:
        lines.append(f"\nNo attacker, {c['aggregator']} − mean, {c['peers']} peers: AUROC {_signed(c['delta']['mean'])} "
                     f"(worst peer {_signed(c['delta_worst']['mean'])}), time per round "
                     f"{c['time_per_round_ratio']:.2f}x ({c['time_per_round_ratio_without_eval']:.2f}x without "
                     "evaluation)" + ("." if jobs == 1 else f", measured with {jobs} runs in parallel."))
    return "\n".join(lines)


def plot(summary: dict, setups: tuple[Setup, ...], kinds: tuple[str, ...], aggregators: tuple[str, ...],
         path: Path, title: str) -> None:
    """One panel per setup: per kind and aggregator, the honest mean's AUROC change (bar)
    and the worst honest peer's (marker); the robust target dashed."""
    cells = {(r["setup"], r["kind"], r["aggregator"]): r for r in summary["attacks"]}
    fig, axes = plt.subplots(1, len(setups), figsize=(5.5 * len(setups), 4.8), squeeze=False, sharey=True)
    x, width = np.arange(len(kinds)), 0.8 / len(aggregators)
    for ax, setup in zip(axes[0], setups):
        for k, agg in enumerate(aggregators):
            rows = [cells[(setup.label, kind, agg)] for kind in kinds]
            ax.bar(x + k * width, [r["delta"]["mean"] for r in rows], width, color=f"C{k}", label=f"{agg}: honest mean")
            ax.scatter(x + k * width, [r["delta_worst"]["mean"] for r in rows], marker="v", color="black", zorder=3,
                       s=14, label="worst honest peer" if k == 0 else None)
        ax.axhline(-ATTACK_TARGET, linestyle="--", color="grey", label=f"−{ATTACK_TARGET} (robust target)")
        ax.axhline(0.0, color="black", linewidth=0.6)
        ax.set_xticks(x + width * (len(aggregators) - 1) / 2, kinds, rotation=35, ha="right", fontsize=8)
        ax.set_title(f"{setup.peers} peers, attacker(s) {', '.join(map(str, setup.attacker_peers()))}", fontsize=9)
    axes[0][0].set_ylabel("AUROC with attack − without the attackers (honest peers)")
    axes[0][0].legend(fontsize=7)
    cost = "; ".join(f"no attacker, {c['aggregator']} − mean at {c['peers']} peers: {_signed(c['delta']['mean'])} "
                     f"AUROC, {c['time_per_round_ratio']:.2f}x per round" for c in summary["cost_without_attacker"])
    fig.suptitle(f"{title}\n{cost}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The options; ``--smoke`` replaces the grid by the smallest one."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--setups", type=parse_setups, default=parse_setups("8:1,16:1,16:2"),
                        help="PEERS:ATTACKERS,... (default 8:1,16:1,16:2)")
    parser.add_argument("--kinds", type=parse_kinds, default=KINDS, help=f"default {','.join(KINDS)}")
    parser.add_argument("--aggregators", type=parse_aggregators, default=("mean", "clipped"),
                        help="default mean,clipped (mean is the reference of the cost figures)")
    parser.add_argument("--seeds", type=parse_seeds, default=(0, 1, 2), help="default 0,1,2")
    parser.add_argument("--rounds", type=int, default=20, help="most rounds (default 20)")
    parser.add_argument("--no-converge", dest="converge", action="store_false",
                        help="run all --rounds instead of users' convergence stop")
    parser.add_argument("--corroboration", type=int, default=LearningConfig.corroboration,
                        help="--corroboration of every peer (F+1 against F colluding attackers)")
    parser.add_argument("--clip-factor", type=float, default=LearningConfig.clip_factor,
                        help="--clip-factor of every peer (clipped)")
    parser.add_argument("--topology", default=TOPOLOGY, help=f"every run's --topology (default {TOPOLOGY})")
    parser.add_argument("--compress", default=LearningConfig.compress,
                        help=f"every run's --compress (default {LearningConfig.compress})")
    parser.add_argument("--final-agreement", type=int, default=LearningConfig.final_agreement,
                        help=f"every run's --final-agreement (default {LearningConfig.final_agreement})")
    parser.add_argument("--data", default="breastmnist")
    parser.add_argument("--partition", default=None, help="default: the simulation's for --data")
    parser.add_argument("--jobs", type=int, default=1, help="simulations run in parallel processes (default 1)")
    parser.add_argument("--out", type=Path, default=Path("results/bench_attacks.json"))
    parser.add_argument("--smoke", action="store_true",
                        help="seconds: " + ", ".join(f"{k} {v}" for k, v in SMOKE.items()))
    args = parser.parse_args(argv)
    if args.smoke:
        vars(args).update(SMOKE, setups=parse_setups(SMOKE["setups"]))
    args.partition = args.partition or default_partition(args.data)
    if args.jobs < 1 or args.rounds < 1:
        parser.error("--jobs and --rounds must be >= 1")
    try:
        LearningConfig(clip_factor=args.clip_factor, corroboration=args.corroboration, compress=args.compress,
                       final_agreement=args.final_agreement)
        SimSetup(topology=args.topology)
    except ConfigError as err:
        parser.error(str(err))
    return args


def run_all(jobs: list[Job], workers: int, console: Console, save: Callable[[list[dict]], None]) -> list[dict]:
    """Every job with a progress bar (ETA weighted by peers); ``save`` gets the records so far."""
    records: list[dict] = []
    columns = (TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn(),
               TimeRemainingColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task(f"0/{len(jobs)} runs", total=sum(j.peers for j in jobs))
        for record in execute(jobs, workers):
            records.append(record)
            save(records)
            progress.update(task, advance=record["peers"],
                            description=f"{len(records)}/{len(jobs)} runs, last {record['peers']} peers "
                                        f"{record['kind'] or 'no attack'} {record['aggregator']} s{record['seed']}")
    return records


def describe(args: argparse.Namespace, runs: int) -> dict:
    """The JSON's ``config``: what ran, what is compared, the targets' rules, how time was taken."""
    return {
        "data": args.data, "partition": args.partition, "topology": args.topology, "compress": args.compress,
        "final_agreement": args.final_agreement, "max_rounds": args.rounds,
        "setups": {s.label: {"peers": s.peers, "attacker_peers": list(s.attacker_peers())} for s in args.setups},
        "kinds": list(args.kinds), "aggregators": list(args.aggregators), "seeds": list(args.seeds),
        "corroboration": args.corroboration, "clip_factor": args.clip_factor,
        "stopping": "convergence vote as users' runs, --rounds the fallback" if args.converge else
                    "all --rounds (--no-converge)",
        "compared_on": f"each honest peer's global-test AUROC averaged over the run's last {LAST} evaluated "
                       "rounds; mean over the honest peers and the worst of them; attacked minus the same "
                       "seed's run without the attackers (their hospitals down from round 0), on the same "
                       "honest peers (delta < 0: a loss); vs_member: minus the run in which the attackers' "
                       "hospitals take part honestly (the loss of their data included)",
        "targets": {"robust": f"mean over seeds of delta and delta_worst >= -{ATTACK_TARGET}",
                    "positive control (mean)": f"hurts: mean over seeds of delta or delta_worst < -{ATTACK_TARGET}",
                    "cost": f"no attacker, robust - mean: mean delta >= -{COST_AUROC_TARGET}, mean ratio of "
                            f"wall s per round <= {COST_TIME_TARGET}"},
        "timing": "wall time of Simulation.run (not building the split) / rounds run; "
                  + ("one run at a time" if args.jobs == 1 else
                     f"measured with {args.jobs} runs in parallel, the aggregators interleaved alike"),
        "jobs": args.jobs, "runs": runs,
    }


def main(argv: list[str] | None = None) -> dict:
    """Run the grid, pair every attacked run with its runs without attack, write JSON + PNG."""
    args = parse_args(argv)
    console = Console()
    jobs = plan(args.setups, args.kinds, args.aggregators, args.seeds, data=args.data, partition=args.partition,
                rounds=args.rounds, converge=args.converge, corroboration=args.corroboration,
                clip_factor=args.clip_factor, topology=args.topology, compress=args.compress,
                final_agreement=args.final_agreement)
    config = describe(args, len(jobs))
    machine = {"cpus": os.cpu_count(), "load_average_at_start": list(os.getloadavg()),
               "python": platform.python_version(), "torch": torch.__version__, "torch_threads": 1}
    args.out.parent.mkdir(parents=True, exist_ok=True)

    def save(records: list[dict]) -> None:
        atomic_write(args.out, json.dumps({"config": config, "machine": machine, "partial": True,
                                           "runs": records}, indent=2) + "\n")

    start = time.perf_counter()
    with benchmarking():
        records = run_all(jobs, args.jobs, console, save)
    summary = summarize_runs(records, args.setups, args.kinds, args.aggregators, args.seeds)
    report = {"config": config, "machine": machine, "wall_s": time.perf_counter() - start, **summary,
              "runs": sorted(records, key=lambda r: (r["seed"], r["peers"], r["kind"] or "", r["aggregator"]))}
    atomic_write(args.out, json.dumps(report, indent=2) + "\n")
    swarm = args.topology + (f" {args.compress}" if args.compress != "none" else "") + \
        (f" fa{args.final_agreement}" if args.final_agreement else "")
    title = (f"{args.data}, {swarm}, {args.rounds} rounds at most, seeds {','.join(map(str, args.seeds))}: "
             "AUROC with attack − without, paired by seed")
    plot(summary, args.setups, args.kinds, args.aggregators, args.out.with_suffix(".png"), title)
    print(markdown(summary, args.setups, args.kinds, args.aggregators, args.jobs))
    for name, met in summary["targets"].items():
        console.print(f"{'met   ' if met else 'MISSED'}  {name}")
    console.print(f"wrote {args.out} and {args.out.with_suffix('.png')} in {report['wall_s']:.0f} s")
    return report


if __name__ == "__main__":
    main()
