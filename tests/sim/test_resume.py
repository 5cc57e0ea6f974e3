"""A peer killed mid-round resumes from its last complete checkpoint on disk."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from swarm.checkpoint import CheckpointStore
from swarm.faults import Crash, FaultConfig
from swarm.topology import build_topology
from tests.fakes import FakeTrainer, fake_federation
from tests.sim.test_fault_properties import WatchedSwarm, protocol


class RecordingSwarm(WatchedSwarm):
    """Remembers every checkpointed state and what each restart loaded."""

    def __init__(self, *args, before_restart=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.saved: dict[tuple[int, int], dict] = {}
        self.resumed: dict[int, tuple[int, dict]] = {}
        self.before_restart = before_restart

    def _do_checkpoint(self, peer, action):
        super()._do_checkpoint(peer, action)
        self.saved[(peer.index, action.round)] = {k: v.copy() for k, v in peer.node.weights.items()}

    def _start(self, peer, fresh):
        if not fresh and self.before_restart is not None:
            self.before_restart(self, peer)
        super()._start(peer, fresh)
        if not fresh:
            self.resumed[peer.index] = (peer.proto.round, {k: v.copy() for k, v in peer.node.weights.items()})


def no_early_stop(config):
    """Run to max_rounds, so the crashed peer is certain to come back."""
    return replace(config, convergence=replace(config.convergence, min_rounds=10_000))


def run(tmp_path, before_restart=None):
    n, seed = 6, 5
    trainer = FakeTrainer(n, seed)
    swarm = RecordingSwarm(
        trainer, fake_federation(n, seed), build_topology("ring", n), trainer.initial_weights(seed),
        no_early_stop(protocol(max_rounds=14)), FaultConfig(crashes=(Crash(2, 4, 8),), train_time=1.0),
        seed=seed, train_seed=lambda site, r: site * 1000 + r, state_dir=tmp_path,
        before_restart=before_restart,
    )
    runs = swarm.run()
    return swarm, runs


def test_killed_peer_resumes_from_its_last_checkpoint_with_identical_weights(tmp_path):
    swarm, runs = run(tmp_path)
    start_round, weights = swarm.resumed[2]
    # it died when it was about to train round 4, so round 3 was its last complete one
    assert start_round == 4
    assert np.array_equal(weights["w"], swarm.saved[(2, 3)]["w"])
    assert runs[2].exited and runs[2].stop_round == runs[0].stop_round
    assert swarm.violations == []


def test_truncated_newest_checkpoint_falls_back_to_the_previous_one(tmp_path):
    def truncate_newest(swarm, peer):
        newest = CheckpointStore(tmp_path / peer.id).list()[-1]
        data = newest.read_bytes()
        newest.write_bytes(data[: len(data) // 2])

    swarm, runs = run(tmp_path, before_restart=truncate_newest)
    start_round, weights = swarm.resumed[2]
    assert start_round == 3
    assert np.array_equal(weights["w"], swarm.saved[(2, 2)]["w"])
    assert runs[2].exited and runs[2].stop_round == runs[0].stop_round
