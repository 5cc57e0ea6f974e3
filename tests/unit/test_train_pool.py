"""Training pools, the --eval-peers sample, flat per-peer weights and the --ray option."""

from __future__ import annotations

import argparse
import sys

import numpy as np
import pytest

from peers.cli import main
from peers.simulate_options import add_arguments
from swarm.config import OutputConfig, SimSetup
from swarm.errors import ConfigError
from swarm.eval_sample import EvalSample
from swarm.flat_weights import FlatWeights
from swarm.node import SwarmNode
from swarm.options import from_args, to_argv
from swarm.train_pool import LocalPool, make_pool


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_ray_option_alone_means_a_local_ray_and_an_address_is_kept():
    assert from_args(SimSetup, parse()).ray is None
    assert from_args(SimSetup, parse("--ray")).ray == "local"
    assert from_args(SimSetup, parse("--ray", "10.0.0.5:6379", "--peers", "4")).ray == "10.0.0.5:6379"
    setup = from_args(SimSetup, parse("--ray", "ray://head:10001"))
    assert from_args(SimSetup, parse(*to_argv(setup))) == setup


def test_missing_ray_is_one_config_error_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    with pytest.raises(ConfigError, match=r"medswarm\[ray\]"):
        make_pool("local", object(), [])
    assert make_pool(None, object(), []) is None


def test_simulate_with_ray_missing_exits_with_one_line(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)
    code = main(["simulate", "--ray", "--peers", "2", "--rounds", "1", "--arms", "fedavg", "--quiet",
                 "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert len(err.splitlines()) == 1 and "medswarm[ray]" in err and "Traceback" not in err


def test_local_pool_trains_when_the_result_is_asked_for():
    calls = []

    def train(weights, data, seed):
        calls.append(seed)
        return ("trained", seed)

    pool = LocalPool(train, ["site0", "site1"])
    jobs = [pool.submit(i, {}, 10 + i) for i in range(2)]
    assert calls == []
    assert jobs[1].result() == ("trained", 11) and calls == [11]
    assert jobs[1].result() == ("trained", 11) and calls == [11]  # once
    assert jobs[0].result() == ("trained", 10) and jobs[0].seconds >= 0


@pytest.mark.parametrize("n,k", [(10, 3), (7, 7), (5, 9), (256, 16)])
def test_rotating_sample_scores_k_peers_and_everyone_within_ceil_n_over_k_rounds(n, k):
    sample = EvalSample(n, k, seed=4)
    rounds = -(-n // k)
    seen = set()
    for r in range(rounds):
        peers = sample.peers(r)
        assert len(peers) == min(k, n) and len(set(peers)) == len(peers)
        assert [p for p in range(n) if sample.includes(r, p)] == peers
        seen.update(peers)
    assert seen == set(range(n))
    assert EvalSample(n, k, seed=4).peers(1) == sample.peers(1)  # seeded
    assert EvalSample(n, None).peers(3) == list(range(n))


def test_eval_peers_must_be_positive():
    with pytest.raises(ConfigError, match="eval_peers"):
        OutputConfig(eval_peers=0)


def test_flat_weights_live_in_one_buffer_and_assigning_copies():
    rng = np.random.default_rng(0)
    template = {"a": rng.normal(size=(3, 4)).astype(np.float32), "n": np.array(7, dtype=np.int64),
                "b": rng.normal(size=5).astype(np.float32)}
    flat = FlatWeights(template)
    assert flat.buffer.size == 17 and all(np.shares_memory(flat.views[k], flat.buffer) for k in "ab")
    assert all(np.array_equal(flat.views[k], template[k]) and flat.views[k].dtype == template[k].dtype
               for k in template)
    node = SwarmNode("p0", lambda w, d, s: None, [0] * 3, "m", template, {}, flat=True)
    own = node.weights
    node.weights = {k: 2 * v for k, v in own.items()}  # save, replace, restore: as with plain dicts
    assert np.array_equal(own["a"], template["a"]) and np.array_equal(node.weights["a"], 2 * template["a"])
    node.weights = own
    assert np.array_equal(node.weights["a"], template["a"])


def test_a_flat_node_mixes_to_the_same_weights_as_a_plain_one():
    rng = np.random.default_rng(1)
    start = {"w": rng.normal(size=(4, 4)).astype(np.float32), "b": rng.normal(size=4).astype(np.float32)}

    def node(flat):
        return SwarmNode("p0", lambda w, d, s: None, [0] * 10, "m", start, {"p1": 1}, flat=flat)

    plain, flat = node(False), node(True)
    other = {k: v * 0.5 for k, v in start.items()}

    class Msg:
        tensors, sample_count = other, 10

    for n in (plain, flat):
        n.mix({"p1": Msg()})
    assert all(np.array_equal(plain.weights[k], flat.weights[k]) for k in start)
    assert not np.array_equal(flat.weights["w"], start["w"])


def test_an_address_where_nothing_listens_is_one_config_error_at_once():
    import socket

    from swarm.ray_pool import check_reachable

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ConfigError, match="nothing answers"):
        check_reachable(f"127.0.0.1:{port}", timeout=5)
    check_reachable("auto")  # left to Ray


def test_ray_with_differential_privacy_is_one_config_error(capsys):
    from peers.cli import main

    code = main(["simulate", "--data", "heart", "--rounds", "1", "--arms", "local", "--ray",
                 "--dp-epsilon", "3", "--quiet", "--out", "/nonexistent-never-written"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "--ray with --dp-epsilon is not supported" in err  # before Ray is even looked for
