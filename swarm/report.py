"""Run outputs: ``metrics.jsonl``, ``report.json``, ``report.md`` and ``curves.png``.

The same writer serves the simulation and, later, collected reports of real peers, so
both produce files people can compare side by side.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any, Iterable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from swarm.atomic_file import atomic_write  # noqa: E402
from swarm.attack_report import render_attacks  # noqa: E402


def write_metrics(path: Path, rows: Iterable[dict]) -> None:
    """One JSON object per line: arm, round, peer, loss, accuracy, auroc, consensus, bytes."""
    atomic_write(path, "".join(json.dumps(row, sort_keys=True) + "\n" for row in rows))


def _fmt(value: Any, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def render_markdown(report: dict) -> str:
    """A human-readable summary of ``report.json``: arms table, per-site table, config."""
    arms = report["arms"]
    lines = [f"# {report.get('title', 'medswarm simulation report')}", ""]
    cfg = report["config"]
    lines.append(
        f"{cfg['peers']} peers, data `{cfg['data']}`, partition `{cfg['partition']}`, "
        f"topology `{cfg['topology']}`, {cfg['rounds']} rounds x {cfg['local_epochs']} local epoch(s), "
        f"{cfg['gossip_steps']} gossip step(s)/round, seed {cfg['seed']}; wall time {report['wall_s']:.1f} s."
    )
    lines += [
        "",
        "Figures are on the held-out global test set, averaged over the last "
        f"{next(iter(arms.values()))['rounds_averaged']} rounds; `worst` is the worst peer.",
        "",
        "| arm | AUROC | worst-peer AUROC | accuracy | MB sent |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, arm in arms.items():
        label = f"{name} (honest peers)" if arm.get("attackers_left_out") else name
        lines.append(
            f"| {label} | {_fmt(arm['auroc'])} | {_fmt(arm['worst_auroc'])} | "
            f"{_fmt(arm['accuracy'])} | {arm['bytes_sent'] / 1e6:.1f} |"
        )
    if "swarm" in arms and "mean_model" in arms["swarm"]:
        whose = "the honest peers'" if arms["swarm"].get("attackers_left_out") else "all peers'"
        lines += ["", f"Swarm: the average of {whose} final models scores AUROC "
                      f"{_fmt(arms['swarm']['mean_model']['auroc'])}; "
                      f"{arms['swarm'].get('rejected', 0)} message(s) rejected."]
    sampled = next((arm["evaluated_peers"] for arm in arms.values() if "evaluated_peers" in arm), None)
    if sampled is not None:
        lines += ["", f"Scored per evaluated round: {sampled['k']} of {sampled['n']} peers ({sampled['sample']}; "
                      "`evaluated_peers` in report.json lists them per round)."]
    training = report.get("training") or {}
    if training.get("backend") == "ray":
        lines += ["", f"Trainings ran as Ray tasks at `{training['address']}` ({training['cluster_cpus']:g} CPUs): "
                      f"{training['trainings']} trainings on {len(training['trainings_per_node'])} node(s)."]
    private = {name: arm for name, arm in arms.items() if "dp_epsilon_budget" in arm}
    if private:
        lines += ["", "Differential privacy: " + "; ".join(
            f"{name} epsilon budget {arm['dp_epsilon_budget']:g} per hospital, delta up to {arm['dp_delta']:.2g}, "
            f"spent up to {max(s.get('dp_epsilon_spent') or 0.0 for s in arm['per_site']):.3g}"
            for name, arm in private.items()) + "."]
    swarm = arms.get("swarm", {})
    if "attacks" in swarm:
        lines += render_attacks(swarm["attacks"])
    if "decision" in swarm:
        lines += _simulated_protocol(swarm) if "virtual_time_s" in swarm else _launched_protocol(swarm)
    lines += ["", "## Per site (final models, global test)", "",
              "| site | train n | " + " | ".join(arms) + " |",
              "|---|---:|" + "---:|" * len(arms)]
    first = next(iter(arms.values()))["per_site"]
    for i, site in enumerate(first):
        cells = [_fmt(arms[a]["per_site"][i]["auroc"]) if i < len(arms[a]["per_site"]) else "–" for a in arms]
        lines.append(f"| {site['name']} | {site['train_samples']} | " + " | ".join(cells) + " |")
    lines += ["", "## Config", "", "```json", json.dumps(cfg, indent=2, sort_keys=True), "```", ""]
    return "\n".join(lines)


def _simulated_protocol(swarm: dict) -> list[str]:
    """The protocol section of a simulation report: virtual time, faults, per-peer counters."""
    dec = swarm["decision"]
    lines = ["", "## Swarm protocol", "",
             f"Stopped at round(s) {dec['stop_rounds']} ({'all at the same round' if dec['same_round'] else 'NOT the same round'}); "
             f"why: {'; '.join(dec['reasons']) or '–'}. Simulated time {swarm['virtual_time_s']:.1f} s, "
             f"{_fmt(swarm.get('sim_time_per_round_s'), 2)} s per round; "
             f"{swarm['control_dropped']} control message(s) and {swarm['transfers_dropped']} transfer(s) dropped.",
             "", "| peer | rounds completed | stop round | phases timed out | waiting s | suspicions | "
             "catch-ups | rejected | crashed / back |", "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for p in swarm["peers"]:
        crash = "–" if p["crashed_at"] is None else f"{p['crashed_at']:.1f} s / " + (
            "–" if p["restarted_at"] is None else f"{p['restarted_at']:.1f} s")
        lines.append(
            f"| {p['peer']}{' (slow)' if p['straggler'] else ''}{' (attacker)' if p.get('attacker') else ''} | {p['rounds_completed']} | "
            f"{p['stop_round'] if p['stop_round'] is not None else '–'} | {p['phases_timed_out'] or 0} | "
            f"{_fmt(p['waiting_s'], 1)} | {p['suspicions'] or 0} | {p['catch_ups'] or 0} | {p['rejected']} | {crash} |")
    return lines


def _launched_protocol(swarm: dict) -> list[str]:
    """The protocol section of ``medswarm launch``'s report: real processes, wall time."""
    dec = swarm["decision"]
    lines = ["", "## Swarm protocol (real peer processes)", "",
             f"Stopped at round(s) {dec['stop_rounds']} ({'all at the same round' if dec['same_round'] else 'NOT the same round'}); "
             f"why: {'; '.join(dec['reasons']) or '–'}. Wall time {_fmt(swarm.get('wall_s_per_round'), 2)} s per round.",
             "", "| peer | peer id | rounds completed | stop round | rejected | bad control | AUROC |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for p in swarm["peers"]:
        lines.append(f"| {p.get('name', p['site'])} | `{p['peer_id'][-8:]}` | {p['rounds_completed']} | "
                     f"{p['stop_round'] if p['stop_round'] is not None else '–'} | {sum(p['rejected'].values())} | "
                     f"{p['bad_control']} | {_fmt(p['auroc'])} |")
    return lines


def plot_curves(path: Path, rows: list[dict]) -> None:
    """Global-test AUROC per round for each arm (mean over peers, worst peer dashed),
    and the swarm's consensus distance per round."""
    arms = sorted({row["arm"] for row in rows}, key=lambda a: ["swarm", "fedavg", "local", "central", "cwt"].index(a)
                  if a in ("swarm", "fedavg", "local", "central", "cwt") else 99)
    has_consensus = any(row["arm"] == "swarm" for row in rows)
    fig, axes = plt.subplots(1, 2 if has_consensus else 1, figsize=(12 if has_consensus else 7, 4.5))
    ax = axes[0] if has_consensus else axes
    for arm in arms:
        by_round: dict[int, list[float]] = {}
        for row in rows:
            if row["arm"] == arm and row["auroc"] is not None:
                by_round.setdefault(row["round"], []).append(row["auroc"])
        rounds = sorted(by_round)
        line, = ax.plot(rounds, [sum(by_round[r]) / len(by_round[r]) for r in rounds], label=arm)
        if arm in ("swarm", "local"):
            ax.plot(rounds, [min(by_round[r]) for r in rounds], linestyle="--", color=line.get_color(),
                    alpha=0.6, label=f"{arm} (worst peer)")
    ax.set_xlabel("round")
    ax.set_ylabel("global test AUROC")
    ax.set_title("Global test AUROC per round")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if has_consensus:
        by_round = {}
        for row in rows:
            if row["arm"] == "swarm" and row["consensus_distance"] is not None:
                by_round.setdefault(row["round"], []).append(row["consensus_distance"])
        rounds = sorted(by_round)
        means = [sum(by_round[r]) / len(by_round[r]) for r in rounds]
        axes[1].plot(rounds, means, color="C0")
        if min(means, default=0.0) > 0:  # two fully mixed peers reach exactly 0: no log scale then
            axes[1].set_yscale("log")
        axes[1].set_xlabel("round")
        axes[1].set_ylabel("relative distance to neighbours' average")
        axes[1].set_title("Swarm consensus distance (each peer's local estimate, mean)")
        axes[1].grid(alpha=0.3)
    fig.tight_layout()
    image = io.BytesIO()
    fig.savefig(image, format="png", dpi=110)
    plt.close(fig)
    atomic_write(path, image.getbuffer())


def write_report(out_dir: Path, report: dict, rows: list[dict]) -> dict[str, Path]:
    """Write all four outputs into ``out_dir`` and return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "metrics": out_dir / "metrics.jsonl",
        "report_json": out_dir / "report.json",
        "report_md": out_dir / "report.md",
        "curves": out_dir / "curves.png",
    }
    write_metrics(paths["metrics"], rows)
    atomic_write(paths["report_json"], json.dumps(report, indent=2, sort_keys=True) + "\n")
    atomic_write(paths["report_md"], render_markdown(report))
    plot_curves(paths["curves"], rows)
    return paths
