"""End-to-end simulations on the shipped real data, seeded and small."""

import json

import numpy as np
import pytest

from peers.cli import main
from swarm.config import LearningConfig, SimSetup
from swarm.arm_results import summarize
from swarm.simulate import Simulation, SimConfig


@pytest.fixture(scope="module")
def breast_run(tmp_path_factory):
    """One small run of the real command on the embedded BreastMNIST (all five arms)."""
    out = tmp_path_factory.mktemp("sim")
    code = main(["simulate", "--rounds", "12", "--out", str(out), "--quiet", "--seed", "0"])
    assert code == 0
    return out


def test_report_json_has_the_documented_schema(breast_run):
    report = json.loads((breast_run / "report.json").read_text())
    assert set(report["arms"]) == {"swarm", "fedavg", "local", "central", "cwt"}
    for arm in report["arms"].values():
        assert 0.0 <= arm["accuracy"] <= 1.0 and 0.0 <= arm["auroc"] <= 1.0
        assert len(arm["per_site"]) == 8
        for site in arm["per_site"]:
            assert {"site", "accuracy", "auroc"} <= set(site)
    assert report["config"]["peers"] == 8 and report["config"]["data"] == "breastmnist"
    assert report["wall_s"] > 0
    assert (breast_run / "curves.png").stat().st_size > 10_000
    assert "| swarm |" in (breast_run / "report.md").read_text()


def test_metrics_jsonl_has_one_line_per_peer_per_round(breast_run):
    rows = [json.loads(line) for line in (breast_run / "metrics.jsonl").read_text().splitlines()]
    swarm = [r for r in rows if r["arm"] == "swarm"]
    rounds = 12 + LearningConfig().final_agreement  # the default's final-agreement round has its line too
    assert len(swarm) == 8 * rounds
    assert {(r["round"], r["peer"]) for r in swarm} == {(r, p) for r in range(rounds) for p in range(8)}
    for key in ("loss", "accuracy", "auroc", "consensus_distance", "bytes_sent"):
        assert all(r[key] is not None for r in swarm), key
    # bytes sent grow every round for a gossiping peer, never for a local one
    peer0 = sorted((r["round"], r["bytes_sent"]) for r in swarm if r["peer"] == 0)
    assert all(b2 > b1 for (_, b1), (_, b2) in zip(peer0, peer0[1:]))
    assert all(r["bytes_sent"] == 0 for r in rows if r["arm"] == "local")


def test_swarm_beats_local_training_on_breastmnist(breast_run):
    arms = json.loads((breast_run / "report.json").read_text())["arms"]
    assert arms["swarm"]["auroc"] > arms["local"]["auroc"]
    assert arms["swarm"]["worst_auroc"] > arms["local"]["worst_auroc"]


def final_consensus(gossip_steps):
    sim = Simulation(SimConfig(SimSetup(peers=4, arms=("swarm",)),
                               LearningConfig(data="heart", partition="sites", rounds=6, seed=0,
                                              gossip_steps=gossip_steps)))
    (result,) = sim.run()
    return np.mean([r["consensus_distance"] for r in result.rows if r["round"] == 5])


def test_more_gossip_steps_bring_the_peers_closer():
    assert final_consensus(5) < 0.5 * final_consensus(1)


def heart_summary(seed):
    sim = Simulation(SimConfig(SimSetup(peers=4, arms=("swarm", "fedavg", "local")),
                               LearningConfig(data="heart", partition="sites", rounds=15, seed=seed)))
    return summarize(sim.run()), sim


def test_heart_hospitals_gain_from_the_swarm():
    """Four real hospitals: every one's swarm model beats the mean of what they learn alone."""
    summary, _ = heart_summary(0)
    assert summary["swarm"]["auroc"] > summary["local"]["auroc"]
    assert summary["swarm"]["worst_auroc"] > summary["local"]["worst_auroc"]
    assert summary["swarm"]["rejected"] == 0 and summary["swarm"]["accepted"] > 0


def test_same_seed_gives_the_same_numbers_and_another_seed_does_not():
    a, _ = heart_summary(3)
    b, _ = heart_summary(3)
    c, _ = heart_summary(4)
    assert a["swarm"]["auroc"] == b["swarm"]["auroc"]
    assert a["swarm"]["per_site"] == b["swarm"]["per_site"]
    assert a["swarm"]["auroc"] != c["swarm"]["auroc"]


def test_without_faults_every_peer_completes_every_round_with_its_neighbours_models():
    sim = Simulation(SimConfig(SimSetup(peers=4, topology="ring", arms=("swarm",)),
                               LearningConfig(data="heart", partition="sites", rounds=10, seed=1, converge=False,
                                              final_agreement=0)))
    summary = summarize(sim.run())["swarm"]
    # 4 peers on a ring, 2 neighbours each, gossip_steps models per round
    most = 4 * 2 * sim.config.learning.gossip_steps * sim.config.learning.rounds
    assert 0.9 * most <= summary["accepted"] <= most
    assert summary["rejected"] == 0
    assert summary["decision"] == {"stop_rounds": [9], "same_round": True, "reasons": ["max-rounds"]}
    assert all(p["rounds_completed"] == 10 and p["catch_ups"] == 0 for p in summary["peers"])
    assert summary["bytes_sent"] > 0
