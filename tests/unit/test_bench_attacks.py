"""scripts/bench_attacks.py: where the attackers sit, which runs go and in what order, the
paired differences, and a smoke run of the whole script on ``heart`` into a tmp dir."""

from __future__ import annotations

import argparse
import json
import math

import pytest

from tests.scripts import load_script

bench = load_script("bench_attacks")


def test_attackers_sit_at_the_same_peers_in_every_setup_and_spread_out():
    assert bench.Setup(8, 1).attacker_peers() == (3,)
    assert bench.Setup(16, 1).attacker_peers() == (3,)
    assert bench.Setup(16, 2).attacker_peers() == (3, 11)
    assert len(bench.Setup(5, 4).attacker_peers()) == 4


@pytest.mark.parametrize("text", ["8", "8:0", "8:8", "x:1"])
def test_a_setup_without_an_attacker_or_an_honest_peer_is_refused(text):
    with pytest.raises(argparse.ArgumentTypeError):
        bench.parse_setups(text)


def test_every_default_kind_parses_and_an_unknown_one_is_refused():
    assert bench.parse_kinds(",".join(bench.KINDS)) == bench.KINDS
    with pytest.raises(argparse.ArgumentTypeError):
        bench.parse_kinds("signflip,scale")  # scale needs its factor


def test_the_plan_shares_no_attack_runs_and_alternates_which_aggregator_goes_first():
    jobs = bench.plan(bench.parse_setups("16:1,16:2"), ("zeros",), ("mean", "clipped"), (0, 1),
                      data="heart", partition="iid", rounds=3, converge=True)
    baselines = [j for j in jobs if j.kind is None and not j.absent]
    assert len(baselines) == 2 * 2  # one per (aggregator, seed), shared by 16:1 and 16:2
    without = [j for j in jobs if j.absent]
    assert len(without) == 2 * 2 * 2  # one per (setup, aggregator, seed): the attackers differ
    assert {j.attackers for j in without} == {(3,), (3, 11)} and all(j.kind is None for j in without)
    assert [c.peer for c in without[0].config().faults.crashes] == list(without[0].attackers)
    assert all(c.at_round == 0 for j in without for c in j.config().faults.crashes)
    assert len(jobs) == len(baselines) + len(without) + 2 * 2 * 2
    cost_only = bench.plan(bench.parse_setups("8:1,16:2"), (), ("mean", "clipped"), (0,),
                           data="heart", partition="iid", rounds=3, converge=True, clip_factor=3.0)
    assert {j.config().learning.aggregation().clip_factor for j in cost_only} == {3.0}
    assert [(j.peers, j.kind, j.absent) for j in cost_only] == [(8, None, False)] * 2 + [(16, None, False)] * 2
    assert {j.attackers for j in jobs if j.kind} == {(3,), (3, 11)}
    firsts = [jobs[i].aggregator for i in range(0, len(jobs), 2)]
    assert {"mean", "clipped"} == set(firsts)
    assert all(jobs[i].aggregator != jobs[i + 1].aggregator for i in range(0, len(jobs), 2))


def record(kind, aggregator, tail, attackers=(), wall=1.0, absent=False):
    return {"peers": len(tail), "aggregator": aggregator, "seed": 0, "kind": kind, "attackers": list(attackers),
            "absent": absent,
            "last_rounds_auroc": tail, "final_auroc": tail, "wall_s": 3 * wall, "wall_s_per_round": wall,
            "rounds_run": 3, "timings": {"eval_s": 1.5}, "stop_rounds": [2], "rejected_by_reason": {}}


def test_the_runs_without_attackers_are_scored_on_the_same_honest_peers_as_the_attacked_one():
    runs = [record(None, "mean", [0.8, 0.7, 0.9, 0.1], wall=2.0), record("zeros", "mean", [0.7, 0.6, 0.8, 0.5], (3,)),
            record(None, "mean", [0.75, 0.7, 0.85, None], (3,), absent=True),
            record(None, "clipped", [0.8, 0.7, 0.9, 0.1], wall=3.0),
            record(None, "clipped", [0.75, 0.7, 0.85, None], (3,), absent=True),
            record("zeros", "clipped", [0.8, 0.7, 0.85, 0.5], (3,))]
    summary = bench.summarize_runs(runs, (bench.Setup(4, 1),), ("zeros",), ("mean", "clipped"), (0,))
    plain, robust = summary["attacks"]
    # against the run without the attacker (the target's baseline); peer 3 is out of both
    assert plain["delta"]["mean"] == pytest.approx(-0.2 / 3)
    assert plain["delta_worst"]["mean"] == pytest.approx(-0.1) and plain["hurts"]
    assert robust["delta"]["mean"] == pytest.approx(0.05 / 3) and robust["within_target"]
    # against the run with the attacker's hospital taking part honestly
    assert plain["vs_member"]["mean"] == pytest.approx(-0.1) and plain["vs_member_worst"]["mean"] == pytest.approx(-0.1)
    assert robust["vs_member"]["mean"] == pytest.approx(-0.05 / 3)
    (cost,) = summary["cost_without_attacker"]
    assert cost["delta"]["mean"] == 0 and cost["time_per_round_ratio"] == 1.5 and not cost["within_time_target"]
    assert cost["time_per_round_ratio_without_eval"] == pytest.approx((9 - 1.5) / (6 - 1.5))
    assert summary["positive_control_kinds_that_hurt_mean"] == {"4:1": ["zeros"]}


def finite(values):
    return all(isinstance(v, float) and math.isfinite(v) for v in values)


@pytest.mark.slow
def test_the_smoke_run_writes_paired_figures_for_every_kind_setup_and_aggregator(tmp_path, capsys):
    out = tmp_path / "bench_attacks.json"
    bench.main(["--smoke", "--out", str(out)])
    report = json.loads(out.read_text())
    assert out.with_suffix(".png").stat().st_size > 0
    assert report["config"]["setups"] == {"8:1": {"peers": 8, "attacker_peers": [3]}}
    rows = {(r["kind"], r["aggregator"]) for r in report["attacks"]}
    assert rows == {(k, a) for k in ("signflip", "forge-stop") for a in ("mean", "clipped")}
    assert len(report["runs"]) == 2 + 2 + 2 * 2  # per aggregator a run with and one without the attacker, then each kind
    for row in report["attacks"]:
        assert finite([row["delta"]["mean"], row["delta_worst"]["mean"], row["delta"]["max_loss"],
                       row["vs_member"]["mean"], row["vs_member_worst"]["mean"]])
        assert ("hurts" if row["aggregator"] == "mean" else "within_target") in row
    (cost,) = report["cost_without_attacker"]
    assert finite([cost["delta"]["mean"], cost["time_per_round_ratio"], cost["time_per_round_ratio_without_eval"]])
    assert report["targets"] and all(isinstance(v, bool) for v in report["targets"].values())
    for run in report["runs"]:
        honest = bench.honest_figures(run, tuple(run["attackers"]))
        if run["absent"]:  # the attackers' hospitals never ran: no figures of theirs
            assert all(run["last_rounds_auroc"][i] is None for i in run["attackers"])
            assert finite([v for i, v in enumerate(run["last_rounds_auroc"]) if i not in run["attackers"]])
        else:
            assert finite(run["last_rounds_auroc"])
        assert run["rounds_run"] == 3
        assert honest["mean"] == pytest.approx(run["reported_auroc"])  # as the simulation's report has it
    assert "| signflip |" in capsys.readouterr().out


def test_topology_compression_and_final_agreement_reach_every_run_and_the_config():
    args = bench.parse_args(["--setups", "8:1", "--kinds", "signflip", "--topology", "onepeer-exp",
                             "--compress", "q8", "--final-agreement", "1"])
    jobs = bench.plan(args.setups, args.kinds, ("clipped",), (0,), data=args.data, partition=args.partition,
                      rounds=3, converge=True, topology=args.topology, compress=args.compress,
                      final_agreement=args.final_agreement)
    for job in jobs:
        config = job.config()
        assert (config.setup.topology, config.learning.compress, config.learning.final_agreement) == \
            ("onepeer-exp", "q8", 1)
    described = bench.describe(args, len(jobs))
    assert (described["topology"], described["compress"], described["final_agreement"]) == ("onepeer-exp", "q8", 1)
    assert bench.Job("heart", "sites", 3, True, 8, "clipped", 0).config().setup.topology == bench.TOPOLOGY


def test_a_bad_topology_or_compression_is_a_usage_error(capsys):
    for bad in (["--topology", "moebius"], ["--compress", "zip"], ["--final-agreement", "-1"]):
        with pytest.raises(SystemExit):
            bench.parse_args(bad)
    assert "error" in capsys.readouterr().err
