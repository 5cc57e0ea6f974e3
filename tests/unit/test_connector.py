"""The trio loop around discovery: it sends exchanges on link-up and redials a lost neighbour
with backoff until it answers (fake transport, trio's autojump clock: no real waiting)."""

from __future__ import annotations

import random

import trio

from gossip.control import PeerExchange, PeerRecord, decode_control
from gossip.errors import TransportError
from peers.connector import Connector
from peers.discovery import Discovery, DiscoveryConfig


class FakeNet:
    """Links of peer "me"; ``reachable`` peers accept a dial."""

    peer_id = "me"

    def __init__(self) -> None:
        self.linked: set[str] = set()
        self.reachable: set[str] = set()
        self.dials: list[tuple[float, str]] = []
        self.sent: list[tuple[str, object]] = []

    def neighbours(self) -> list[str]:
        return sorted(self.linked)

    async def connect(self, addr: str) -> str:
        peer = addr.rsplit("/p2p/", 1)[1]
        self.dials.append((trio.current_time(), peer))
        await trio.sleep(0.01)
        if peer not in self.reachable:
            raise TransportError(f"cannot connect to {peer}")
        self.linked.add(peer)
        return peer

    async def send(self, peer: str, data: bytes) -> None:
        self.sent.append((peer, decode_control(data)))


def make(net: FakeNet, target: int = 1) -> Connector:
    members = {"me", "a", "b"}
    d = Discovery("me", members.__contains__, DiscoveryConfig(target=target), ["/ip4/10.0.0.9/tcp/1"],
                  random.Random(3))
    return Connector(net, d)


def bootstrapped_to_a() -> tuple[FakeNet, Connector]:
    """A connector with "a" as its reachable bootstrap peer."""
    net = FakeNet()
    conn = make(net)
    conn.discovery.add_bootstrap("a", "/ip4/10.0.0.1/tcp/1/p2p/a", trio.current_time())
    net.reachable.add("a")
    return net, conn


async def test_link_up_gets_an_exchange_and_a_lost_neighbour_is_redialled_until_it_answers(autojump_clock):
    net, conn = bootstrapped_to_a()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(conn.run)
        with trio.fail_after(5):
            await conn.wait_for_neighbours(1)
        await trio.sleep(1.0)
        assert [p for p, _ in net.sent] == ["a"]
        assert net.sent[0][1] == PeerExchange("me", (PeerRecord("me", ("/ip4/10.0.0.9/tcp/1/p2p/me",)),
                                                     PeerRecord("a", ("/ip4/10.0.0.1/tcp/1/p2p/a",))))

        net.linked.discard("a")  # a dies
        net.reachable.discard("a")
        lost_at = trio.current_time()
        while len(net.dials) < 6:
            await trio.sleep(0.1)
        net.reachable.add("a")  # a is back
        with trio.fail_after(120):
            while "a" not in net.linked:
                await trio.sleep(0.1)
        nursery.cancel_scope.cancel()

    redials = [t for t, p in net.dials[1:] if p == "a"]
    gaps = [b - a for a, b in zip([lost_at, *redials], redials)]
    assert 0.375 - 0.3 <= gaps[0] <= 0.5 + 0.3  # first delay 0.5 s, jittered, plus a poll
    for i in range(1, 5):  # doubling: each gap at least 0.75 of its base, at most base + a poll
        base = 0.5 * 2 ** i
        assert 0.75 * base - 0.05 <= gaps[i] <= base + 0.3, (i, gaps)
    assert conn.discovery.stats.redials >= 6 and conn.discovery.connected == {"a"}


async def test_a_forged_exchange_is_refused_and_a_real_one_leads_to_a_dial(autojump_clock):
    net = FakeNet()
    conn = make(net, target=2)
    net.reachable.add("b")

    assert not conn.on_exchange("a", PeerExchange("b", (PeerRecord("b", ("/ip4/10.0.0.2/tcp/1",)),)))
    assert conn.discovery.known() == [] and conn.bad_exchanges == 1

    async with trio.open_nursery() as nursery:
        nursery.start_soon(conn.run)
        assert conn.on_exchange("a", PeerExchange("a", (PeerRecord("b", ("/ip4/10.0.0.2/tcp/1",)),)))
        with trio.fail_after(5):
            await conn.wait_for_neighbours(1)
        nursery.cancel_scope.cancel()
    assert net.dials[0][1] == "b" and net.linked == {"b"}


async def test_exchanges_sent_count_as_control_bytes(autojump_clock):
    from gossip.control import encode_control

    net, conn = bootstrapped_to_a()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(conn.run)
        with trio.fail_after(5):  # virtual time (autojump clock)
            await conn.wait_for_neighbours(1)
            while not net.sent:
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    assert net.sent and conn.traffic.control_bytes == sum(len(encode_control(m)) for _, m in net.sent)
