"""``--eval-peers K``: K peers scored per evaluated round, rotating, every peer in the last."""

from __future__ import annotations

from swarm.config import LearningConfig, OutputConfig, SimSetup
from swarm.simulate import Simulation, SimConfig


def test_each_arm_scores_k_rotating_peers_per_round_and_every_peer_in_the_last():
    config = SimConfig(setup=SimSetup(peers=4, arms=("swarm", "fedavg", "local")),
                       learning=LearningConfig(rounds=3, converge=False, partition="iid", final_agreement=0),
                       output=OutputConfig(eval_peers=2))
    sim = Simulation(config)
    results = sim.run()
    for res in results:
        by_round = {r: sorted(row["peer"] for row in res.rows if row["round"] == r) for r in range(3)}
        assert [len(by_round[r]) for r in range(3)] == [2, 2, 4], res.arm
        assert set(by_round[0]) | set(by_round[1]) == {0, 1, 2, 3}, res.arm  # rotating: all within n/K rounds
        assert by_round[0] == sim.sample.peers(0) and by_round[1] == sim.sample.peers(1)
        assert res.extra["evaluated_peers"]["rounds"] == by_round
        assert len(res.per_site) == 4
