"""The simulation's private arms: each site its own accountant, the budget in the report."""

from __future__ import annotations

import pytest

from swarm.config import LearningConfig, SimSetup
from swarm.arm_results import summarize
from swarm.simulate import Simulation, SimConfig


@pytest.fixture(scope="module")
def private_run():
    learning = LearningConfig(data="heart", partition="sites", rounds=3, seed=0, dp_epsilon=2.0, dp_accountant="rdp")
    sim = Simulation(SimConfig(SimSetup(peers=4, arms=("swarm", "fedavg", "local")), learning))
    return summarize(sim.run()), sim


def test_every_private_arm_reports_its_budget_delta_and_each_sites_spend(private_run):
    summary, sim = private_run
    for name in ("swarm", "fedavg", "local"):
        arm = summary[name]
        assert arm["dp_epsilon_budget"] == 2.0
        deltas = [1 / (10 * len(site.train)) for site in sim.federation.sites]
        assert arm["dp_delta"] == pytest.approx(max(deltas))
        for entry, site in zip(arm["per_site"], sim.federation.sites):
            assert 0 < entry["dp_epsilon_spent"] <= 2.0
            assert entry["dp_rounds_charged"] == 3 and not entry["dp_budget_exhausted"]
            assert entry["dp_delta"] == pytest.approx(1 / (10 * len(site.train)))


def test_private_swarm_peers_still_mix_their_neighbours_models(private_run):
    summary, _ = private_run
    assert summary["swarm"]["accepted"] > 0 and summary["swarm"]["rejected"] == 0


def test_without_dp_the_report_has_no_privacy_fields():
    sim = Simulation(SimConfig(SimSetup(peers=4, arms=("local",)),
                               LearningConfig(data="heart", partition="sites", rounds=1, seed=0)))
    arm = summarize(sim.run())["local"]
    assert "dp_epsilon_budget" not in arm and "dp_epsilon_spent" not in arm["per_site"][0]


def test_peers_past_their_budget_keep_mixing_until_the_swarm_stops():
    # a given noise that fits fewer rounds than planned: every site runs out before round 4
    learning = LearningConfig(data="heart", partition="sites", rounds=5, seed=0, dp_epsilon=1.0, dp_noise=2.0,
                              dp_accountant="rdp")
    sim = Simulation(SimConfig(SimSetup(peers=4, arms=("swarm",)), learning))
    arm = summarize(sim.run())["swarm"]
    for entry in arm["per_site"]:
        assert entry["dp_budget_exhausted"] and entry["dp_rounds_charged"] < 5
        assert entry["dp_epsilon_spent"] <= 1.0
    assert all(peer["exited"] and peer["rounds_completed"] == 5 + learning.final_agreement for peer in arm["peers"])
    assert arm["decision"]["same_round"] and arm["accepted"] > 0
