"""The tolerance-ended final agreement: a peer's exchanges end once it and its neighbours are
near their neighbours' averages, and every peer still stops after the same round (the cap)."""

from __future__ import annotations

import dataclasses

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from swarm.topology import build_topology
from swarm.virtual_swarm import VirtualSwarm
from tests.fakes import fake_federation
from tests.sim.test_final_agreement import CountingTrainer
from tests.sim.test_fault_properties import Faults, protocol


def run(final_rounds: int, tolerance: float, n: int = 8, seed: int = 1, topology: str = "ring",
        faults=None, max_rounds: int = 3, gossip_steps: int = 1):
    trainer = CountingTrainer(n, seed)
    config = protocol(gossip_steps=gossip_steps, max_rounds=max_rounds)
    config = dataclasses.replace(config, convergence=dataclasses.replace(config.convergence, min_rounds=max_rounds + 1),
                                 final_rounds=final_rounds, final_tolerance=tolerance)
    swarm = VirtualSwarm(trainer, fake_federation(n, seed), build_topology(topology, n, seed=seed, degree=3),
                         trainer.initial_weights(seed), config, faults or Faults(), seed=seed,
                         train_seed=lambda site, r: 1000 * site + r)
    runs = swarm.run()
    weights = np.stack([p.node.weights["w"] for p in swarm.peers])
    spread = float(np.linalg.norm(weights - weights.mean(axis=0), axis=1).max())
    return swarm, runs, trainer, spread


def _skipped(swarm: VirtualSwarm) -> list[int]:
    return [p.proto.stats.final_skipped for p in swarm.peers]


def test_a_loose_tolerance_ends_the_exchanges_early_but_every_peer_stops_at_the_cap():
    fixed, fixed_runs, _, _ = run(final_rounds=12, tolerance=0.0)
    swarm, runs, trainer, _ = run(final_rounds=12, tolerance=10.0)
    assert set(trainer.calls.values()) == {3}  # training unchanged
    assert {r.stop_round for r in runs} == {r.stop_round for r in fixed_runs} == {2 + 12}
    assert all(r.exited for r in runs)
    # each peer ends the exchanges early: it skips them, or (left behind by neighbours that
    # skipped) adopts a settled neighbour's final model, after fewer rounds still
    assert all(p.proto.stats.final_skipped >= 8 or (p.proto.stats.catch_ups and p.proto.stats.rounds_completed <= 5)
               for p in swarm.peers), (_skipped(swarm), [p.proto.stats.catch_ups for p in swarm.peers])
    assert _skipped(fixed) == [0] * 8
    assert sum(r.bytes_sent for r in runs) < 0.8 * sum(r.bytes_sent for r in fixed_runs)


def test_an_unreachable_tolerance_runs_every_final_round():
    _, fixed_runs, _, fixed_spread = run(final_rounds=6, tolerance=0.0)
    swarm, runs, _, spread = run(final_rounds=6, tolerance=1e-12)
    assert _skipped(swarm) == [0] * 8
    assert spread == fixed_spread
    assert [r.bytes_sent for r in runs] == [r.bytes_sent for r in fixed_runs]


def test_the_models_end_within_the_tolerance_of_their_neighbours():
    """With a tolerance the cap does not bind: peers end the exchanges early, skipping once
    they and their neighbours still exchanging were within the tolerance (the others mix in the
    final model of a neighbour that did, or run out of partners); the spread shrinks."""
    tolerance = 0.1
    swarm, runs, _, spread = run(final_rounds=40, tolerance=tolerance)
    *_, before = run(final_rounds=0, tolerance=0.0)
    skipped = _skipped(swarm)
    assert sum(s > 0 for s in skipped) >= 2
    for peer in swarm.peers:
        if peer.proto.stats.final_skipped == 0:
            continue
        history, gone = peer.proto.tolerance.rounds, peer.proto.tolerance.gone
        assert any(r > 2 and all(history.get(m, {}).get(r, 1.0) <= tolerance
                                 for m in [peer.id, *peer.proto.neighbours] if m not in gone)
                   for r in history[peer.id])
    assert spread < 0.5 * before


@settings(max_examples=25, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(4, 9), topology=st.sampled_from(["ring", "kregular", "exponential", "full"]),
       seed=st.integers(0, 10_000), cap=st.integers(1, 6), tolerance=st.sampled_from([0.01, 0.1, 1.0, 10.0]),
       drop=st.sampled_from([0.0, 0.05, 0.15]), delay=st.sampled_from([0.0, 0.1, 0.3]),
       steps=st.integers(1, 2))
def test_every_peer_stops_after_the_same_round_whatever_the_tolerance(n, topology, seed, cap, tolerance, drop,
                                                                        delay, steps):
    if topology == "kregular" and n % 2:
        n += 1
    swarm, runs, trainer, _ = run(final_rounds=cap, tolerance=tolerance, n=n, seed=seed, topology=topology,
                                  faults=Faults(drop=drop, delay=delay, jitter=0.5 * delay), gossip_steps=steps)
    assert all(r.exited for r in runs)
    assert {r.stop_round for r in runs} == {2 + cap}
    assert set(trainer.calls.values()) == {3}
    assert all(0 <= s <= cap for s in _skipped(swarm))
