"""Benchmark: what differential privacy costs the swarm, FedAvg and each hospital alone.

For each data set and each epsilon (``inf`` = no privacy), ``medswarm simulate --arms
swarm,fedavg,local`` with ``--peers`` hospitals, paired over ``--seeds`` seeds (same splits,
same initial weights, same training seeds in every arm and at every epsilon). Figures are the
mean over the last 5 rounds (worst peer too). The question a hospital asks: at which epsilon
does the private swarm still beat each hospital alone without privacy? Answered per seed,
paired: private swarm AUROC minus the non-private local AUROC, and the number of hospitals
whose own non-private model the private swarm's model beats. Also the swarm arm's training
time per round per peer with DP against without (runs at different moments of a shared
machine: indicative only).

``--timing-only REPS`` instead times one local round on the largest site without DP, with
DP-SGD, and with DP-SGD plus the accountant's per-round spend, interleaved in one process
(the ratio is against a baseline measured in the same run; CPU seconds of one thread, so a
loaded machine does not distort it), into ``bench_privacy_time.json``.

``--cosines SPEC,...`` instead measures why the direction check refused honest private models:
for each ``DATA:EPS:BATCH`` (``EPS`` = ``inf`` for no privacy) one swarm-only simulation of
seed 0 with both neighbour checks off (``--min-cosine -1 --max-norm-ratio 1000``, so the
models mix as honest ones would), recording, for every received model, its cosine with the
receiver's own and its norm ratio, per round, into ``bench_privacy_cosines.json``.

Writes ``results/bench_privacy.json`` and ``results/bench_privacy.png`` after every run.

    nice -n 10 .venv/bin/python scripts/bench_privacy.py [--datasets breastmnist,pneumoniamnist]
        [--eps 1,3,8,inf] [--seeds 3] [--rounds 10] [--peers 8] [--batch-size 64] [--lr 0.05] [--jobs 2]
    nice -n 10 .venv/bin/python scripts/bench_privacy.py --timing-only 7 --rounds 6
    .venv/bin/python scripts/bench_privacy.py --merge A.json B.json   # one JSON of separate runs
    nice -n 10 .venv/bin/python scripts/bench_privacy.py --cosines pneumoniamnist:1:16,breastmnist:inf:16 --rounds 6
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import numpy as np

from swarm.atomic_file import atomic_write

ARMS = ("swarm", "fedavg", "local")


def run_one(data: str, eps: float, seed: int, args: argparse.Namespace, work: Path) -> dict:
    """One simulate run; the arms' figures and the swarm's training time per round per peer."""
    out = work / f"{data}-{eps}-{seed}"
    cmd = [sys.executable, "-m", "peers.cli", "simulate", "--data", data, "--arms", ",".join(ARMS),
           "--peers", str(args.peers), "--rounds", str(args.rounds), "--no-converge", "--seed", str(seed),
           "--batch-size", str(args.batch_size), "--lr", str(args.lr), "--quiet", "--out", str(out)]
    if math.isfinite(eps):
        cmd += ["--dp-epsilon", str(eps)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)  # the caller's nice -n 10 is inherited
    if proc.returncode != 0:
        raise SystemExit(f"simulate failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    report = json.loads((out / "report.json").read_text())
    arms = report["arms"]
    row = {"data": data, "eps": eps, "seed": seed, "wall_s": time.perf_counter() - start,
           "min_cosine": report["config"].get("min_cosine")}
    for arm in ARMS:
        a = arms[arm]
        row[arm] = {"auroc": a["auroc"], "worst_auroc": a["worst_auroc"],
                    "site_auroc": [s["auroc"] for s in a["per_site"]],
                    "eps_spent_max": max((s.get("dp_epsilon_spent", 0.0) for s in a["per_site"]), default=0.0),
                    "noise": [s.get("dp_noise_multiplier") for s in a["per_site"]],
                    "dp_delta": a.get("dp_delta"),
                    "train_s_per_round_per_peer": a["timings"]["train_s"] / (args.rounds * args.peers)}
    row["swarm"]["rejected"] = arms["swarm"]["rejected_by_reason"]
    print(json.dumps({k: row[k] for k in ("data", "eps", "seed", "wall_s")}
                     | {arm: round(row[arm]["auroc"], 4) for arm in ARMS}), flush=True)
    return row


def time_rounds(data: str, reps: int, args: argparse.Namespace) -> dict:
    """Seconds of one local round on the largest site without DP, with DP-SGD alone and with
    DP-SGD plus the accountant's per-round spend (what a real peer pays), interleaved
    repetitions in one process so that the machine's load hits all three alike."""
    from swarm.config import LearningConfig
    from swarm.privacy import PrivacyLedger, PrivateTraining, plan
    from swarm.task import prepare
    from swarm.training import Trainer

    learning = LearningConfig(data=data, batch_size=args.batch_size, lr=args.lr, rounds=args.rounds, dp_epsilon=3.0)
    prepared = prepare(learning, args.peers)
    fed = prepared.federation
    site = max(fed.sites, key=lambda s: len(s.train)).train
    plain = Trainer(fed.input_shape, fed.num_classes, learning.train_config())
    dp = plan(learning.privacy(), len(site), args.batch_size, 1, reps)  # every repetition within budget
    alone = PrivateTraining(prepared.trainer, PrivacyLedger(dp), track=False)
    paying = PrivateTraining(prepared.trainer, PrivacyLedger(dp), track=True)
    import torch

    torch.set_num_threads(1)  # as medswarm simulate; CPU seconds then equal work, whatever the load
    names = ("no_dp", "dp_sgd", "dp_sgd_and_accountant")
    wall: dict[str, list[float]] = {k: [] for k in names}
    cpu: dict[str, list[float]] = {k: [] for k in names}
    for r in range(reps):
        for name, fn in zip(names, (plain.train, alone, paying)):
            start, start_cpu = time.perf_counter(), time.process_time()
            fn(prepared.initial, site, r)
            wall[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    med = {k: float(np.median(v)) for k, v in cpu.items()}
    return {"data": data, "site_records": len(site), "steps_per_round": dp.steps_per_round, "reps": reps,
            "median_cpu_s": med, "median_wall_s": {k: float(np.median(v)) for k, v in wall.items()},
            "dp_sgd_over_no_dp": med["dp_sgd"] / med["no_dp"],
            "dp_with_accountant_over_no_dp": med["dp_sgd_and_accountant"] / med["no_dp"]}


def measure_cosines(spec: str, args: argparse.Namespace) -> dict:
    """Cosines and norm ratios of every received model against the receiver's own, per round
    (``DATA:EPS:BATCH``; checks off, so honest models mix whatever their angle)."""
    import swarm.node
    from gossip.validate import _norms_and_dot
    from peers.cli import main as cli

    data, eps, batch = spec.split(":")
    seen: list[tuple[int, float, float]] = []
    check = swarm.node.validate_weights

    def recording(msg, **kw):  # type: ignore[no-untyped-def]
        own, got, dot = _norms_and_dot(kw["reference"], msg.tensors)
        if own > 0 and got > 0:
            seen.append((msg.round, dot / (own * got), got / own))
        return check(msg, **kw)

    argv = ["simulate", "--data", data, "--arms", "swarm", "--peers", str(args.peers), "--rounds", str(args.rounds),
            "--no-converge", "--seed", "0", "--batch-size", batch, "--lr", str(args.lr), "--quiet",
            "--min-cosine", "-1", "--max-norm-ratio", "1000"]
    if math.isfinite(float(eps)):
        argv += ["--dp-epsilon", eps]
    swarm.node.validate_weights = recording
    try:
        with tempfile.TemporaryDirectory() as tmp:
            if cli([*argv, "--out", tmp]) != 0:
                raise SystemExit(f"simulate failed: {' '.join(argv)}")
            report = json.loads((Path(tmp) / "report.json").read_text())["arms"]["swarm"]
    finally:
        swarm.node.validate_weights = check
    rounds = sorted({r for r, _, _ in seen})
    per_round = []
    for r in rounds:
        cos = np.array([c for q, c, _ in seen if q == r])
        ratio = np.array([n for q, _, n in seen if q == r])
        per_round.append({"round": r, "models": len(cos), "cosine_min": float(cos.min()),
                          "cosine_p10": float(np.percentile(cos, 10)), "cosine_median": float(np.median(cos)),
                          "below_0_5": int((cos < 0.5).sum()), "below_0": int((cos < 0).sum()),
                          "norm_ratio_min": float(ratio.min()), "norm_ratio_max": float(ratio.max()),
                          "beyond_2": int(((ratio > 2) | (ratio < 0.5)).sum())})
    cos = np.array([c for _, c, _ in seen])
    out = {"data": data, "eps": eps, "batch_size": int(batch), "models": len(cos),
           "cosine_min": float(cos.min()), "cosine_median": float(np.median(cos)),
           "share_below_0_5": float((cos < 0.5).mean()), "share_below_0": float((cos < 0).mean()),
           "noise": [s.get("dp_noise_multiplier") for s in report["per_site"]],
           "auroc_checks_off": report["auroc"], "per_round": per_round}
    print(json.dumps({k: v for k, v in out.items() if k != "per_round"}), flush=True)
    return out


def summarise(rows: list[dict], datasets: list[str], eps_list: list[float]) -> dict:
    """Per data set and epsilon: arm means, and the paired comparison with the non-private local arm."""
    out: dict = {}
    for data in datasets:
        base = {r["seed"]: r for r in rows if r["data"] == data and math.isinf(r["eps"])}
        table = {}
        for eps in eps_list:
            runs = [r for r in rows if r["data"] == data and r["eps"] == eps]
            if not runs:
                continue
            entry = {arm: {"auroc": float(np.mean([r[arm]["auroc"] for r in runs])),
                           "auroc_sd": float(np.std([r[arm]["auroc"] for r in runs])),
                           "worst_auroc": float(np.min([r[arm]["worst_auroc"] for r in runs])),
                           "eps_spent_max": float(max(r[arm]["eps_spent_max"] for r in runs)),
                           "train_s_per_round_per_peer": float(np.mean([r[arm]["train_s_per_round_per_peer"]
                                                                         for r in runs]))}
                     for arm in ARMS}
            runs = [r for r in runs if r["seed"] in base]
            if runs:
                diffs = [r["swarm"]["auroc"] - base[r["seed"]]["local"]["auroc"] for r in runs]
                worst = [r["swarm"]["worst_auroc"] - base[r["seed"]]["local"]["auroc"] for r in runs]
                beaten = [sum(s > b for s, b in zip(r["swarm"]["site_auroc"], base[r["seed"]]["local"]["site_auroc"]))
                          for r in runs]
                entry["private_swarm_minus_local_no_dp"] = {
                    "mean": float(np.mean(diffs)), "worst_seed": float(min(diffs)),
                    "worst_peer_mean": float(np.mean(worst)),
                    "hospitals_beaten_mean": float(np.mean(beaten)), "per_seed": diffs}
                entry["swarm_train_time_ratio_vs_no_dp"] = float(np.mean(
                    [r["swarm"]["train_s_per_round_per_peer"] / base[r["seed"]]["swarm"]["train_s_per_round_per_peer"]
                     for r in runs]))
            table["inf" if math.isinf(eps) else f"{eps:g}"] = entry
        out[data] = table
    return out


def plot(path: Path, summary: dict) -> None:
    """AUROC against epsilon per data set, one line per arm, the non-private local level dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = {data: table for data, table in summary.items() if table}  # data sets with runs
    if not summary:
        return

    fig, axes = plt.subplots(1, len(summary), figsize=(5.5 * len(summary), 4), squeeze=False)
    for ax, (data, table) in zip(axes[0], summary.items()):
        labels = list(table)
        for arm in ARMS:
            means = [table[e][arm]["auroc"] for e in labels]
            sds = [table[e][arm]["auroc_sd"] for e in labels]
            ax.errorbar(labels, means, yerr=sds, marker="o", capsize=3, label=arm)
        if "inf" in table:
            ax.axhline(table["inf"]["local"]["auroc"], ls="--", color="grey", label="local, no DP")
        ax.set_title(data)
        ax.set_xlabel("epsilon per hospital")
        ax.set_ylabel("AUROC (mean of last 5 rounds)")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def merge_runs(paths: list[Path]) -> list[dict]:
    """The runs of several outputs, one per (data, eps, seed): a cell in a later file replaces
    an earlier one (a re-run with other code wins over the run it repeats)."""
    cells = {(row["data"], float(row["eps"]), row["seed"]): {**row, "eps": float(row["eps"])}
             for path in paths for row in json.loads(path.read_text())["runs"]}
    return list(cells.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="breastmnist,pneumoniamnist")
    parser.add_argument("--eps", default="1,3,8,inf")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--peers", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("results/bench_privacy.json"))
    parser.add_argument("--timing-only", type=int, metavar="REPS", default=0,
                        help="only time REPS interleaved rounds per data set (with and without DP), into "
                             "OUT with _time before the suffix")
    parser.add_argument("--cells", metavar="DATA:EPS:SEED,...",
                        help="run only these cells of the grid (e.g. the ones a cut-short run missed; --merge "
                             "them with its JSON afterwards)")
    parser.add_argument("--cosines", metavar="DATA:EPS:BATCH,...",
                        help="only measure honest models' cosines and norm ratios with the checks off, into "
                             "OUT with _cosines before the suffix")
    parser.add_argument("--merge", type=Path, nargs="+", metavar="JSON",
                        help="no runs: combine the runs of these outputs (e.g. one data set each) into OUT")
    args = parser.parse_args()
    datasets = [d for d in args.datasets.split(",") if d]
    eps_list = [float(e) for e in args.eps.split(",")]
    if args.merge:
        rows = merge_runs(args.merge)
        every = {(d, e, s) for d in datasets for e in eps_list for s in range(args.seeds)}
        done = {(r["data"], r["eps"], r["seed"]) for r in rows}
        print(json.dumps(write(args, rows, datasets, eps_list, complete=every <= done), indent=1))
        return
    if args.cosines:
        measured = []
        path = args.out.with_name(args.out.stem + "_cosines.json")
        for spec in args.cosines.split(","):
            measured.append(measure_cosines(spec, args))
            atomic_write(path, json.dumps({"config": {k: str(v) for k, v in vars(args).items()},
                                           "runs": measured}, indent=2) + "\n")
        return
    if args.timing_only:
        timing = [time_rounds(d, args.timing_only, args) for d in datasets]
        path = args.out.with_name(args.out.stem + "_time.json")
        atomic_write(path, json.dumps({"config": {k: str(v) for k, v in vars(args).items()}, "timing": timing},
                                      indent=2) + "\n")
        print(json.dumps(timing, indent=1))
        return
    # one data set after the other, seed by seed, the non-private run first: a grid cut short
    # still has complete, paired seeds of the first data sets
    ordered = sorted(eps_list, key=lambda e: (math.isfinite(e), e))
    jobs = [(d, e, s) for d in datasets for s in range(args.seeds) for e in ordered]
    if args.cells:
        wanted = {(d, float(e), int(s)) for d, e, s in (cell.split(":") for cell in args.cells.split(","))}
        jobs = [job for job in jobs if job in wanted]
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(args.jobs) as pool:
        for future in as_completed([pool.submit(run_one, *job, args, Path(tmp)) for job in jobs]):
            rows.append(future.result())
            summary = write(args, rows, datasets, eps_list, complete=len(rows) == len(jobs))
    print(json.dumps(summary, indent=1))


def write(args: argparse.Namespace, rows: list[dict], datasets: list[str], eps_list: list[float],
          complete: bool) -> dict:
    """Write the JSON and PNG of the runs so far (after every run, so a cut-short grid keeps them)."""
    summary = summarise(rows, datasets, eps_list)
    runs = [{**row, "eps": "inf" if math.isinf(row["eps"]) else row["eps"]} for row in rows]
    result = {"config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
              "complete": complete, "runs_done": len(rows), "summary": summary, "runs": runs}
    atomic_write(args.out, json.dumps(result, indent=2, default=str) + "\n")
    plot(args.out.with_suffix(".png"), summary)
    return summary


if __name__ == "__main__":
    main()
