"""``medswarm simulate``: build the config, run with a progress bar, print and write the report."""

from __future__ import annotations

import argparse
import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from swarm.faults import FaultConfig, parse_crash, parse_cut, parse_late
from swarm.report import write_report
from swarm.simulate import ARMS, Simulation, SimConfig, config_dict, summarize


def config_from_args(args: argparse.Namespace) -> SimConfig:
    """Turn parsed options into a validated ``SimConfig`` (raises ConfigError)."""
    partition = args.partition or ("sites" if args.data == "heart" else "dirichlet:0.5")
    peers = args.peers
    return SimConfig(
        peers=peers,
        topology=args.topology,
        rounds=args.rounds,
        local_epochs=args.local_epochs,
        gossip_steps=args.gossip_steps,
        data=args.data,
        partition=partition,
        site_shift=args.site_shift,
        arms=args.arms or ARMS,
        seed=args.seed,
        float16=args.float16,
        lr=args.lr,
        batch_size=args.batch_size,
        optimizer=args.optimizer,
        eval_every=args.eval_every,
        sample_weighted=not args.uniform_mixing,
        faults=FaultConfig(
            delay=args.delay, jitter=min(args.jitter, args.delay), drop=args.drop, train_time=args.train_time,
            stragglers=args.stragglers, slowdown=args.slowdown,
            crashes=tuple(parse_crash(c) for c in args.crash),
            late=tuple(parse_late(lj) for lj in args.late),
            cuts=tuple(parse_cut(c) for c in args.cut),
        ),
        quorum=args.quorum,
        converge=not args.no_converge,
        converge_window=args.converge_window,
        metric_tol=args.metric_tol,
        distance_tol=args.distance_tol,
    )


def run_simulate(args: argparse.Namespace) -> int:
    """Run the simulation described by ``args``; 0 on success."""
    import torch

    console = Console(stderr=True, quiet=args.quiet)
    config = config_from_args(args)
    torch.set_num_threads(1)
    start = time.perf_counter()
    sim = Simulation(config, state_dir=args.state_dir)
    with Progress(
        TextColumn("[bold]{task.description:<8}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, transient=False, disable=args.quiet,
    ) as progress:
        tasks = {arm: progress.add_task(arm, total=config.rounds) for arm in config.arms}
        results = sim.run(lambda arm, done, total: progress.update(tasks[arm], completed=done))
    wall = time.perf_counter() - start
    rows = [row for res in results for row in res.rows]
    report = {
        "config": config_dict(config),
        "arms": summarize(results),
        "wall_s": wall,
        "dataset": {
            "name": sim.federation.name,
            "num_classes": sim.federation.num_classes,
            "input_shape": list(sim.federation.input_shape),
            "global_test": len(sim.federation.global_test),
            "sites": [len(s.train) for s in sim.federation.sites],
        },
        "topology": {str(k): v for k, v in sim.topology.items()},
    }
    paths = write_report(args.out, report, rows)
    table = Table(title=f"medswarm simulate: {config.peers} peers, {config.data}, {config.partition}, "
                        f"{config.topology}, {config.rounds} rounds ({wall:.0f} s)")
    table.add_column("arm")
    table.add_column("AUROC", justify="right")
    table.add_column("worst peer", justify="right")
    table.add_column("accuracy", justify="right")
    for name, arm in report["arms"].items():
        fmt = lambda v: "–" if v is None else f"{v:.3f}"  # noqa: E731
        table.add_row(name, fmt(arm["auroc"]), fmt(arm["worst_auroc"]), fmt(arm["accuracy"]))
    console.print(table)
    console.print(f"last-5-round means on the global test set; outputs in {paths['report_md'].parent}/")
    return 0
