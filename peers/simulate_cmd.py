"""``medswarm simulate``: build the config, run with a progress bar, print and write the report."""

from __future__ import annotations

import argparse
import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from swarm.report import write_report
from swarm.arm_results import summarize
from swarm.simulate import Simulation, SimConfig, config_dict


def run_simulate(args: argparse.Namespace) -> int:
    """Run the simulation described by ``args``; 0 on success."""
    import torch

    config = SimConfig.from_args(args)
    console = Console(stderr=True, quiet=config.output.quiet)
    torch.set_num_threads(1)
    start = time.perf_counter()
    sim = Simulation(config, state_dir=config.output.state_dir)
    with Progress(
        TextColumn("[bold]{task.description:<8}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, transient=False, disable=config.output.quiet,
    ) as progress:
        tasks = {arm: progress.add_task(arm, total=config.learning.rounds) for arm in config.setup.arms}
        results = sim.run(lambda arm, done, total: progress.update(tasks[arm], completed=done, total=total))
    wall = time.perf_counter() - start
    rows = [row for res in results for row in res.rows]
    report = {
        "config": {**config_dict(config), "peers": sim.n},
        "arms": summarize(results),
        "wall_s": wall,
        "training": sim.training,
        "dataset": {
            "name": sim.federation.name,
            "num_classes": sim.federation.num_classes,
            "input_shape": list(sim.federation.input_shape),
            "global_test": len(sim.federation.global_test),
            "sites": [len(s.train) for s in sim.federation.sites],
            "site_names": [s.name for s in sim.federation.sites],
            "class_names": list(sim.federation.class_names) if sim.federation.class_names else None,
            "task": sim.trainer.task.name,
            "model": sim.trainer.model_id,
        },
        "topology": {str(k): v for k, v in sim.topology.items()},
    }
    paths = write_report(config.output.out, report, rows)
    setup, learning = config.setup, config.learning
    table = Table(title=f"medswarm simulate: {sim.n} peers, {learning.data}, {learning.partition}, "
                        f"{setup.topology}, {learning.rounds} rounds ({wall:.0f} s)")
    table.add_column("arm")
    table.add_column("AUROC", justify="right")
    table.add_column("worst peer", justify="right")
    table.add_column("accuracy", justify="right")
    for name, arm in report["arms"].items():
        fmt = lambda v: "–" if v is None else f"{v:.3f}"  # noqa: E731
        label = f"{name} (honest)" if arm.get("attackers_left_out") else name
        table.add_row(label, fmt(arm["auroc"]), fmt(arm["worst_auroc"]), fmt(arm["accuracy"]))
    console.print(table)
    console.print(f"last-5-round means on the global test set; outputs in {paths['report_md'].parent}/")
    return 0
