"""The trio driver runs the same protocol over an async transport, on trio's clock.

``autojump_clock`` makes time jump whenever every task waits, so nothing sleeps for real.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import trio

from gossip.codec import WeightsMessage, digest, encode
from gossip.control import Announce, decode_control, encode_control
from gossip.trio_memory import TrioMemoryNetwork
from peers.runner import PeerRunner
from swarm.checkpoint import CheckpointStore
from swarm.convergence import ConvergenceConfig
from swarm.node import SwarmNode
from swarm.protocol import PeerProtocol, ProtocolConfig
from swarm.round_counter import DeadlineConfig
from tests.fakes import FakeTrainer, fake_federation


def config(max_rounds=8):
    return ProtocolConfig(
        deadline=DeadlineConfig(minimum=0.5, initial=2.0, maximum=10.0),
        suspect_after=20.0, heartbeat=3.0, fetch_timeout=5.0, linger=2.0,
        convergence=ConvergenceConfig(window=2, min_rounds=3, max_rounds=max_rounds, distance_tol=1.5),
    )


async def inline(fn, *args):
    """Train on the event loop: virtual time stands still while the (fake) model trains."""
    return fn(*args)


def build(n, links, tmp_path=None, max_rounds=8, offload=inline):
    trainer = FakeTrainer(n, seed=1)
    fed = fake_federation(n, seed=1)
    net = TrioMemoryNetwork(links)
    runners = []
    for i, peer in enumerate(sorted(links)):
        node = SwarmNode(peer, trainer.train, fed.sites[i].train, trainer.model_id, trainer.initial_weights(0),
                         {nb: len(links[nb]) for nb in links[peer]})
        proto = PeerProtocol(peer, list(links[peer]), config(max_rounds))
        store = CheckpointStore(tmp_path / peer) if tmp_path is not None else None
        runners.append(PeerRunner(net.endpoint(peer), node, proto, store=store,
                                  evaluate=lambda w: float(np.linalg.norm(w["w"] - trainer.optimum)),
                                  train_seed=lambda r, i=i: i * 1000 + r, offload=offload))
    return net, runners


LINE = {"a": ["b"], "b": ["a", "c"], "c": ["b"]}


async def test_three_peers_run_to_the_same_stop_round_and_exit(autojump_clock, tmp_path):
    _, runners = build(3, LINE, tmp_path)
    outcomes = {}

    async def one(runner):
        outcomes[runner.node.peer_id] = await runner.run()

    async with trio.open_nursery() as nursery:
        for runner in runners:
            nursery.start_soon(one, runner)
    assert len({o.stop_round for o in outcomes.values()}) == 1
    assert all(o.rounds_completed >= 3 and not o.rejected for o in outcomes.values())
    # every peer checkpointed its stop round, and the state loads back bit for bit
    stop = outcomes["a"].stop_round
    for runner in runners:
        state = CheckpointStore(tmp_path / runner.node.peer_id).load_latest(runner.node.peer_id)
        assert state.round == stop
        assert np.array_equal(state.weights["w"], runner.node.weights["w"])


async def test_garbage_and_forged_control_messages_are_counted_and_ignored(autojump_clock):
    links = {**LINE, "a": ["b", "m"], "m": ["a"]}
    net, runners = build(4, links)
    runners = [r for r in runners if r.node.peer_id != "m"]
    mallory = net.endpoint("m")
    outcomes = {}

    async def one(runner):
        outcomes[runner.node.peer_id] = await runner.run()

    async with trio.open_nursery() as nursery:
        for runner in runners:
            nursery.start_soon(one, runner)
        await mallory.send("a", b"\xc1 not msgpack")
        forged = Announce("b", 0, 0, "0" * 32, 10, 5, 1)  # claims to be b
        await mallory.send("a", encode_control(forged))
    assert outcomes["a"].bad_control >= 2
    assert len({o.stop_round for o in outcomes.values()}) == 1


async def test_a_late_joiner_catching_up_never_trains_twice_at_once(autojump_clock, caplog):
    # c starts when a and b are rounds ahead: it adopts their model and asks to train a later
    # round while its round-0 training still runs in a thread. Two threads on one trainer
    # corrupt torch's autograd state (seen with real peers), so trainings must not overlap.
    import logging
    import threading
    import time

    caplog.set_level(logging.INFO)
    _, runners = build(3, LINE, max_rounds=12, offload=None)  # real worker threads
    a, b, c = runners
    active, peak, lock = [0], [0], threading.Lock()
    plain = c.node.train_fn

    def slow_train(weights, data, seed):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        try:
            time.sleep(0.05)  # real work takes real time; the virtual clock keeps running meanwhile
            return plain(weights, data, seed)
        finally:
            with lock:
                active[0] -= 1

    c.node.train_fn = slow_train
    outcomes = {}

    async def one(runner):
        outcomes[runner.node.peer_id] = await runner.run()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(one, a)
        nursery.start_soon(one, b)
        while min(a.protocol.round, b.protocol.round) < 3:
            await trio.sleep(0.5)
        nursery.start_soon(one, c)
    assert c.protocol.stats.catch_ups >= 1  # the situation under test happened
    assert peak[0] == 1
    # each adoption is logged, so an operator (and the namespace tests) can see it
    logged = [r.getMessage() for r in caplog.records
              if f"event=catch-up peer={c.node.peer_id} " in r.getMessage()]
    assert len(logged) == c.protocol.stats.catch_ups
    assert len({o.stop_round for o in outcomes.values()}) == 1


async def test_view_reports_round_figures_stop_and_a_silent_neighbour_as_suspected(autojump_clock):
    links = {"a": ["b", "z"], "b": ["a"], "z": ["a"]}  # z never starts
    _, runners = build(3, links)
    a, b = runners[0], runners[1]
    first, suspected_seen = a.view(), []
    outcomes = {}

    async def one(runner):
        outcomes[runner.node.peer_id] = await runner.run()

    async def watch():
        while not a.view().suspected:
            await trio.sleep(0.5)
        suspected_seen.append(a.view())

    with trio.fail_after(3600):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch)
            nursery.start_soon(one, a)
            nursery.start_soon(one, b)
    assert first.round == 0 and first.rounds_completed == 0 and first.loss is None and not first.suspected
    mid = suspected_seen[0]
    assert mid.suspected == ("z",) and mid.neighbours == ("b", "z") and not mid.exited
    end = a.view()
    assert end.exited and end.stop_round == outcomes["a"].stop_round and end.reason == outcomes["a"].reason
    assert end.rounds_completed == outcomes["a"].rounds_completed >= 1
    assert end.loss is not None and end.metric is not None and end.distance is not None
    assert end.voted == a.protocol.convergence.voted()


POISON = 1000.0  # finite and under the validation bound: only the transfer checks stop it


def bad_offer(kind, transport, round_):
    """What a hostile neighbour offers for ``round_``: (digest, size) to announce."""
    tensors = {"w": np.full(4, POISON, dtype=np.float32)}
    header_round = round_ + 1 if kind == "wrong-round" else round_
    payload = encode(WeightsMessage(FakeTrainer.model_id, header_round, "m", 5, tensors))
    key = digest(payload)
    transport.offer(key, payload)
    if kind == "oversized":
        return key, len(payload) - 1  # serves more than it announces
    if kind == "digest-mismatch":
        other = digest(b"what was announced")
        transport.offer(other, payload)  # the bytes behind the announced digest are others
        return other, len(payload)
    return key, len(payload)  # "wrong-round", or "honest" (the positive control)


@pytest.mark.parametrize("kinds", [("oversized", "digest-mismatch", "wrong-round"), ("honest",)])
async def test_transfers_that_break_their_announcement_are_counted_and_never_mixed(autojump_clock, kinds):
    links = {**LINE, "a": ["b", "m"], "m": ["a"]}
    net, runners = build(4, links)
    runners = [r for r in runners if r.node.peer_id != "m"]
    for runner in runners:
        runner.node.aggregation = replace(runner.node.aggregation, max_norm_ratio=None)  # the poison's norm would be refused: test the transfer checks alone
    mallory = net.endpoint("m")
    outcomes = {}

    async def one(runner):
        outcomes[runner.node.peer_id] = await runner.run()

    async def hostile():
        served = 0
        while True:
            msg = decode_control((await mallory.receive()).data)
            if isinstance(msg, Announce):  # answer each of a's phases with a bad offer
                key, size = bad_offer(kinds[served % len(kinds)], mallory, msg.round)
                served += 1
                await mallory.send("a", encode_control(Announce("m", msg.round, msg.step, key, size, 5, 1)))

    async with trio.open_nursery() as outer:
        outer.start_soon(hostile)
        async with trio.open_nursery() as nursery:
            for runner in runners:
                nursery.start_soon(one, runner)
        outer.cancel_scope.cancel()
    a = {r.node.peer_id: r for r in runners}["a"]
    assert len({o.stop_round for o in outcomes.values()}) == 1
    if kinds == ("honest",):  # control: the same numbers, honestly announced, are mixed
        assert not outcomes["a"].rejected
        assert np.abs(a.node.weights["w"]).max() > 10
    else:
        assert set(outcomes["a"].rejected) == set(kinds), outcomes["a"].rejected
        assert np.abs(a.node.weights["w"]).max() < 10  # the fake optimum is O(1)


async def test_peer_exchange_goes_to_discovery_never_to_the_protocol(autojump_clock):
    from gossip.control import PeerExchange, PeerRecord

    net, runners = build(3, LINE, max_rounds=4)
    a = runners[0]
    got = []
    a.on_exchange = lambda sender, msg: got.append((sender, msg)) or True
    outcomes = {}

    async def one(runner):
        outcomes[runner.node.peer_id] = await runner.run()

    records = PeerExchange("b", (PeerRecord("b", ("/ip4/10.0.0.2/tcp/1",)),))
    async with trio.open_nursery() as nursery:
        for runner in runners:
            nursery.start_soon(one, runner)
        await net.endpoint("b").send("a", encode_control(records))

    assert got == [("b", records)]
    assert outcomes["a"].bad_control == 0
    assert len({o.stop_round for o in outcomes.values()}) == 1


async def test_peer_exchange_without_or_refused_by_discovery_counts_as_bad_control(autojump_clock):
    from gossip.control import PeerExchange

    net, runners = build(3, LINE, max_rounds=3)
    runners[1].on_exchange = lambda sender, msg: False  # b refuses (e.g. a forged sender)
    outcomes = {}

    async def one(runner):
        outcomes[runner.node.peer_id] = await runner.run()

    async with trio.open_nursery() as nursery:
        for runner in runners:
            nursery.start_soon(one, runner)
        await net.endpoint("b").send("a", encode_control(PeerExchange("b", ())))  # a has none
        await net.endpoint("a").send("b", encode_control(PeerExchange("a", ())))

    assert outcomes["a"].bad_control == 1 and outcomes["b"].bad_control == 1


async def test_messages_before_ready_are_held_and_fed_once_the_protocol_starts(autojump_clock):
    _, runners = build(3, LINE, max_rounds=4)
    a, b, c = runners
    release = trio.Event()
    started_before_release = []

    async def ready():
        await release.wait()

    outcomes = {}

    async def one(runner, **kw):
        outcomes[runner.node.peer_id] = await runner.run(**kw)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: one(a, ready=ready))
        nursery.start_soon(one, b)
        nursery.start_soon(one, c)
        await trio.sleep(5.0)  # b and c announce and send progress while a is not ready
        started_before_release.append(a.protocol.stats.rounds_completed)
        held = len(a._held)
        release.set()

    assert started_before_release == [0] and held > 0
    assert outcomes["a"].bad_control == 0
    assert len({o.stop_round for o in outcomes.values()}) == 1


async def test_a_message_from_a_link_that_just_came_up_is_not_refused(autojump_clock):
    from gossip.control import Progress

    links = {"a": ["b", "m"], "b": ["a"], "m": ["a"]}
    net, runners = build(3, links, max_rounds=40)
    a = next(r for r in runners if r.node.peer_id == "a")
    others = [r for r in runners if r.node.peer_id == "b"]
    hidden = {"m"}
    real = a.transport.neighbours
    a.transport.neighbours = lambda: [p for p in real() if p not in hidden]  # m links up later
    a.protocol = PeerProtocol("a", ["b"], config(40))
    outcomes = {}

    async def one(runner):
        outcomes[runner.node.peer_id] = await runner.run()

    async with trio.open_nursery() as nursery:
        for runner in [a, *others]:
            nursery.start_soon(one, runner)
        await trio.sleep(1.2)  # between two membership checks (every 0.5 s)
        assert not a.protocol.exited  # still handling messages
        hidden.clear()  # the link to m comes up; m speaks before any membership check
        await net.endpoint("m").send("a", encode_control(Progress("m", 1, 0, None, None, None, False, 0, 3)))

    assert "m" in a.protocol.neighbours
    assert outcomes["a"].bad_control == 0
