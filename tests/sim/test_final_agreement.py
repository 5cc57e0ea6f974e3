"""The final agreement: rounds of averaging without training after the agreed stop round."""

from __future__ import annotations

import dataclasses
from collections import Counter

import numpy as np

from swarm.topology import build_topology
from swarm.virtual_swarm import VirtualSwarm
from tests.fakes import FakeTrainer, fake_federation
from tests.sim.test_fault_properties import Faults, protocol


class CountingTrainer(FakeTrainer):
    """The fake trainer, counting the rounds each site trains."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.calls: Counter[int] = Counter()

    def train(self, weights, data, seed):
        self.calls[data.site] += 1
        return super().train(weights, data, seed)


def run(final_rounds: int, max_rounds: int, n: int = 8, seed: int = 1, converge: bool = False,
        topology: str = "ring"):
    trainer = CountingTrainer(n, seed)
    config = protocol(gossip_steps=1, max_rounds=max_rounds)
    if not converge:
        config = dataclasses.replace(config, convergence=dataclasses.replace(config.convergence, min_rounds=max_rounds + 1))
    swarm = VirtualSwarm(trainer, fake_federation(n, seed), build_topology(topology, n), trainer.initial_weights(seed),
                         dataclasses.replace(config, final_rounds=final_rounds), Faults(), seed=seed,
                         train_seed=lambda site, r: 1000 * site + r)
    runs = swarm.run()
    weights = np.stack([p.node.weights["w"] for p in swarm.peers])
    spread = float(np.linalg.norm(weights - weights.mean(axis=0), axis=1).max())
    return swarm, runs, trainer, spread


def test_peers_average_without_training_after_the_last_round_and_stop_together():
    _, runs, trainer, _ = run(final_rounds=4, max_rounds=3)
    assert set(trainer.calls.values()) == {3}  # rounds 0-2 trained, 3-6 only averaged
    assert {r.stop_round for r in runs} == {6}
    assert all(r.exited for r in runs)


def test_the_final_agreement_brings_the_peers_models_together():
    *_, before = run(final_rounds=0, max_rounds=3)
    *_, some = run(final_rounds=4, max_rounds=3)
    *_, more = run(final_rounds=16, max_rounds=3)
    assert more < 0.6 * some < 0.6 * 0.6 * before


def test_without_a_final_agreement_nothing_changes():
    _, runs, trainer, _ = run(final_rounds=0, max_rounds=3)
    assert set(trainer.calls.values()) == {3} and {r.stop_round for r in runs} == {2}


def test_after_a_converged_stop_every_peer_averages_the_same_rounds_and_stops_together():
    # the setting in which test_fault_properties sees the swarm converge
    _, plain, _, _ = run(final_rounds=0, max_rounds=60, n=6, seed=2, converge=True, topology="full")
    _, runs, trainer, _ = run(final_rounds=3, max_rounds=60, n=6, seed=2, converge=True, topology="full")
    (agreed,) = {r.stop_round for r in plain}
    assert agreed < 59 and all(r.stop_reason.startswith("converged") for r in runs)
    assert {r.stop_round for r in runs} == {agreed + 3}
    assert set(trainer.calls.values()) == {agreed + 1}
