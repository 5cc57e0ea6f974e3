"""One contract for every ``AsyncTransport``: the in-memory one and libp2p on loopback.

``TransportContract`` holds the behaviour; each ``Test*`` subclass only says how to build
three peers ``a - b - c`` (a line: ``a`` and ``c`` are not neighbours). The libp2p-only
tests at the end check what the memory transport cannot have: the consortium allow-list
and Noise-only security, against raw py-libp2p hosts playing the intruder.

Every test is bounded by ``trio.fail_after`` and waits on events, never on sleeps.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import multiaddr
import pytest
import trio
from libp2p import new_host
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.keys import KeyPair, PrivateKey, PublicKey
from libp2p.crypto.x25519 import create_new_key_pair as new_x25519_key_pair
from libp2p.network.config import RetryConfig
from libp2p.network.exceptions import SwarmException
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo, info_from_p2p_addr
from libp2p.security.insecure.transport import PLAINTEXT_PROTOCOL_ID, InsecureTransport
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.security.secio.transport import ID as SECIO_PROTOCOL_ID
from libp2p.security.secio.transport import Transport as SecioTransport
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux

from gossip import libp2p_framing as fr
from gossip.codec import digest
from gossip.errors import BadPayload, TransportError
from gossip.libp2p_identity import Consortium, Member, NodeKey
from gossip.libp2p_transport import (
    CONTROL_PROTOCOL,
    WEIGHTS_PROTOCOL,
    Libp2pConfig,
    Libp2pTransport,
)
from gossip.transport import AsyncTransport
from gossip.trio_memory import TrioMemoryNetwork

LIMIT = 20  # seconds, per test
LOOPBACK = "/ip4/127.0.0.1/tcp/0"


def payload(n: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(n)


class TransportContract:
    """What every ``AsyncTransport`` promises; subclasses provide the ``line3`` fixture."""

    @pytest.fixture
    async def line3(self):  # pragma: no cover - always overridden
        raise NotImplementedError
        yield

    async def test_implements_the_async_transport_protocol(self, line3):
        assert all(isinstance(t, AsyncTransport) for t in line3)

    async def test_neighbours_are_the_linked_peers_sorted(self, line3):
        a, b, c = line3
        assert a.neighbours() == [b.peer_id]
        assert b.neighbours() == sorted([a.peer_id, c.peer_id])
        assert c.neighbours() == [b.peer_id]

    async def test_send_delivers_bytes_in_order_with_the_senders_id(self, line3):
        a, b, c = line3
        with trio.fail_after(LIMIT):
            for i in range(3):
                await a.send(b.peer_id, b"from a %d" % i)
            await c.send(b.peer_id, b"from c")
            got = [await b.receive() for _ in range(4)]
        from_a = [bytes(e.data) for e in got if e.sender == a.peer_id]
        from_c = [bytes(e.data) for e in got if e.sender == c.peer_id]
        assert from_a == [b"from a 0", b"from a 1", b"from a 2"]
        assert from_c == [b"from c"]

    async def test_send_works_in_both_directions(self, line3):
        a, b, _ = line3
        with trio.fail_after(LIMIT):
            await a.send(b.peer_id, b"ping")
            assert (await b.receive()).sender == a.peer_id
            await b.send(a.peer_id, b"pong")
            env = await a.receive()
        assert (env.sender, bytes(env.data)) == (b.peer_id, b"pong")

    async def test_fetch_returns_exactly_the_offered_payload(self, line3):
        a, b, _ = line3
        data = payload(3 * 1024 * 1024 + 17)
        key = digest(data)
        b.offer(key, memoryview(data))  # the codec hands out read-only memoryviews
        with trio.fail_after(LIMIT):
            got = await a.fetch(b.peer_id, key, len(data))
        assert bytes(got) == data

    async def test_bytes_served_counts_what_neighbours_fetched(self, line3):
        a, b, _ = line3
        data = payload(256 * 1024 + 3)
        key = digest(data)
        b.offer(key, memoryview(data))
        before_a, before_b = a.bytes_served, b.bytes_served
        with trio.fail_after(LIMIT):
            await a.fetch(b.peer_id, key, len(data))
            while b.bytes_served == before_b:  # libp2p counts once the fetcher has acknowledged
                await trio.sleep(0.005)
        assert b.bytes_served - before_b == len(data)
        assert a.bytes_served == before_a

    async def test_fetch_of_an_unknown_digest_raises(self, line3):
        a, b, _ = line3
        b.offer(digest(b"known"), b"known")
        with trio.fail_after(LIMIT), pytest.raises(TransportError, match="does not offer") as info:
            await a.fetch(b.peer_id, digest(b"unknown"), 1 << 20)
        assert not isinstance(info.value, BadPayload)  # not the peer's fault: not counted

    async def test_fetch_over_max_bytes_raises_bad_payload(self, line3):
        a, b, _ = line3
        data = payload(4096)
        b.offer(digest(data), data)
        with trio.fail_after(LIMIT), pytest.raises(BadPayload, match="limit") as info:
            await a.fetch(b.peer_id, digest(data), len(data) - 1)
        assert info.value.reason == "oversized"

    async def test_send_and_fetch_to_a_non_neighbour_raise(self, line3):
        a, _, c = line3
        c.offer(digest(b"x"), b"x")
        with trio.fail_after(LIMIT):
            with pytest.raises(TransportError, match="not a neighbour"):
                await a.send(c.peer_id, b"hello")
            with pytest.raises(TransportError, match="not a neighbour"):
                await a.fetch(c.peer_id, digest(b"x"), 10)

    async def test_after_close_calls_raise(self, line3):
        a, b, _ = line3
        b.offer(digest(b"x"), b"x")
        a.close()
        with trio.fail_after(LIMIT):
            with pytest.raises(TransportError, match="closed"):
                await a.send(b.peer_id, b"late")
            with pytest.raises(TransportError, match="closed"):
                await a.receive()
            with pytest.raises(TransportError, match="closed"):
                await a.fetch(b.peer_id, digest(b"x"), 10)


class TestTrioMemoryTransport(TransportContract):
    @pytest.fixture
    async def line3(self):
        net = TrioMemoryNetwork({"a": ["b"], "b": ["a", "c"], "c": ["b"]})
        yield net.endpoint("a"), net.endpoint("b"), net.endpoint("c")


@asynccontextmanager
async def running(keys: list[NodeKey], consortium: Consortium | None,
                  config: Libp2pConfig | None = None) -> AsyncIterator[list[Libp2pTransport]]:
    """Start one transport per key on loopback; close them all on exit."""
    async with AsyncExitStack() as stack:
        yield [await stack.enter_async_context(
            Libp2pTransport.start(k, LOOPBACK, consortium, config)) for k in keys]


async def link(x: Libp2pTransport, y: Libp2pTransport) -> None:
    """``x`` dials ``y``; return once both see each other as neighbours."""
    await x.connect(y.listen_addrs[0])
    await x.wait_for_neighbour(y.peer_id)
    await y.wait_for_neighbour(x.peer_id)


class TestLibp2pTransport(TransportContract):
    @pytest.fixture
    async def line3(self):
        keys = [NodeKey.generate() for _ in range(3)]
        consortium = Consortium([Member(f"hospital-{i}", k.peer_id) for i, k in enumerate(keys)])
        async with running(keys, consortium) as (a, b, c):
            with trio.fail_after(LIMIT):
                await link(a, b)
                await link(c, b)
            yield a, b, c


# ---------------------------------------------------------------------- libp2p only
class _ClaimedKey(PrivateKey):
    """A private key that presents someone else's public key; its signatures are garbage.

    Plaintext security sends only the public key (no proof of the private one), so this is
    all an impersonator needs.
    """

    def __init__(self, victim: PublicKey) -> None:
        self._victim = victim

    def to_bytes(self) -> bytes:
        return b""

    def get_type(self):
        return self._victim.get_type()

    def sign(self, data: bytes) -> bytes:
        return bytes(64)  # the host signs its own peer record at start-up; nobody checks it

    def get_public_key(self) -> PublicKey:
        return self._victim


@asynccontextmanager
async def raw_host(key_pair: KeyPair, security: str | None) -> AsyncIterator:
    """A bare py-libp2p host playing the intruder: ``security`` is "noise", "plaintext",
    "secio" or ``None`` for py-libp2p's defaults (Noise, TLS, secio, plaintext)."""
    if security == "noise":
        sec = {NOISE_PROTOCOL_ID: NoiseTransport(
            key_pair, noise_privkey=new_x25519_key_pair().private_key)}
    elif security == "plaintext":
        sec = {PLAINTEXT_PROTOCOL_ID: InsecureTransport(key_pair)}
    elif security == "secio":
        sec = {SECIO_PROTOCOL_ID: SecioTransport(key_pair)}
    else:
        sec = None
    addr = multiaddr.Multiaddr(LOOPBACK)
    host = new_host(key_pair=key_pair, sec_opt=sec, muxer_opt={YAMUX_PROTOCOL_ID: Yamux},
                    listen_addrs=[addr])
    host.get_network().retry_config = RetryConfig(max_retries=0)
    async with host.run([addr]):
        try:
            yield host
        finally:
            with trio.CancelScope(shield=True):
                await host.close()


def peer_info(t: Libp2pTransport) -> PeerInfo:
    return info_from_p2p_addr(multiaddr.Multiaddr(t.listen_addrs[0]))


class TestLibp2pOnly:
    """Allow-list, Noise-only, integrity and redial behaviour of ``Libp2pTransport``."""

    @pytest.fixture
    async def pair(self):
        """Members a and b, connected; ``spares`` are two more members' keys, not running."""
        a_key, b_key, *spares = [NodeKey.generate() for _ in range(4)]
        consortium = Consortium([Member(f"hospital-{i}", k.peer_id)
                                 for i, k in enumerate([a_key, b_key, *spares])])
        async with running([a_key, b_key], consortium) as (a, b):
            with trio.fail_after(LIMIT):
                await link(a, b)
            yield a, b, spares, consortium

    async def test_a_member_with_a_raw_noise_host_can_connect_and_send(self, pair):
        # Positive control for the intruder tests below: the same kind of raw host, with a
        # member's key, gets through and its frame arrives with its own id.
        a, _, (spare, _), _ = pair
        with trio.fail_after(LIMIT):
            async with raw_host(spare.key_pair, "noise") as host:
                await host.connect(peer_info(a))
                stream = await host.new_stream(ID.from_base58(a.peer_id), [CONTROL_PROTOCOL])
                await stream.write(fr.encode_control(b"hello from spare"))
                env = await a.receive()
                await stream.close()
        assert (env.sender, bytes(env.data)) == (spare.peer_id, b"hello from spare")

    async def test_a_stranger_is_refused_after_the_handshake(self, pair, caplog):
        a, b, _, _ = pair
        stranger = NodeKey.generate()
        with trio.fail_after(LIMIT):
            async with running([stranger], None) as (s,):
                with pytest.raises(TransportError, match="cannot connect"):
                    await s.connect(a.listen_addrs[0])
                assert s.neighbours() == []
                with pytest.raises(TransportError, match="not a neighbour"):
                    await s.send(a.peer_id, b"let me in")
        assert a.neighbours() == [b.peer_id]
        assert any("event=refused-peer" in r.getMessage() and stranger.peer_id in r.getMessage()
                   for r in caplog.records)

    async def test_a_stranger_cannot_open_a_stream(self, pair):
        a, b, _, _ = pair
        with trio.fail_after(LIMIT):
            async with raw_host(create_new_key_pair(), "noise") as host:
                host.get_peerstore().add_addrs(ID.from_base58(a.peer_id),
                                               peer_info(a).addrs, 60)
                with pytest.raises(SwarmException) as info:
                    await host.new_stream(ID.from_base58(a.peer_id), [CONTROL_PROTOCOL])
                # Noise succeeded, then a dropped the connection before the muxer step.
                assert "failed to upgrade mux" in str(info.value.__cause__)
                assert host.get_connected_peers() == []
        assert a.neighbours() == [b.peer_id]

    async def test_a_plaintext_dialer_claiming_a_members_id_is_refused(self, pair):
        a, b, _, _ = pair
        claimed = b.peer_id
        victim_pub = ID.from_base58(claimed).extract_public_key()
        impersonator = KeyPair(_ClaimedKey(victim_pub), victim_pub)
        with trio.fail_after(LIMIT):
            async with raw_host(impersonator, "plaintext") as host:
                # Control: py-libp2p's default security list accepts the impersonation...
                async with raw_host(create_new_key_pair(), None) as default_host:
                    target = default_host.get_addrs()[0]
                    await host.connect(info_from_p2p_addr(target))
                    fooled = [str(p) for p in default_host.get_connected_peers()]
                assert fooled == [claimed]
                # ...while the Noise-only transport refuses it.
                with pytest.raises(SwarmException) as info:
                    await host.connect(peer_info(a))
                assert "failed to negotiate the secure protocol" in str(info.value.__cause__)
                assert host.get_connected_peers() == []
        assert a.neighbours() == [b.peer_id]

    @pytest.mark.parametrize("security", ["plaintext", "secio"])
    async def test_a_member_offering_only_plaintext_or_secio_is_refused_both_ways(self, pair, security):
        # A real member's key (the positive control above gets in with it over Noise):
        # the refusal is about the security protocol alone, dialling in or being dialled.
        a, b, (spare, _), _ = pair
        with trio.fail_after(LIMIT):
            async with raw_host(spare.key_pair, security) as host:
                with pytest.raises(SwarmException) as info:
                    await host.connect(peer_info(a))
                assert "failed to negotiate the secure protocol" in str(info.value.__cause__)
                with pytest.raises(TransportError, match="cannot connect"):
                    await a.connect(str(host.get_addrs()[0]))
                assert host.get_connected_peers() == []
        assert a.neighbours() == [b.peer_id]

    async def test_start_refuses_an_own_key_outside_the_consortium(self, pair):
        *_, consortium = pair
        with trio.fail_after(LIMIT), pytest.raises(TransportError, match="own peer id"):
            async with Libp2pTransport.start(NodeKey.generate(), LOOPBACK, consortium):
                pass  # pragma: no cover

    async def test_start_refuses_a_port_already_listened_on(self, pair):
        a, *_ = pair
        taken = a.listen_addrs[0].split("/p2p/")[0]
        with trio.fail_after(LIMIT), pytest.raises(TransportError, match="cannot listen"):
            async with Libp2pTransport.start(NodeKey.generate(), taken):
                pass  # pragma: no cover

    @pytest.mark.parametrize("addr", ["/ip4/127.0.0.1/udp/0/quic-v1", "/ip4/127.0.0.1/tcp/0/ws",
                                      "not an address"])
    async def test_start_refuses_anything_but_plain_tcp(self, addr):
        with trio.fail_after(LIMIT), pytest.raises(TransportError, match="listen address"):
            async with Libp2pTransport.start(NodeKey.generate(), addr):
                pass  # pragma: no cover

    async def test_an_exception_in_the_block_comes_out_as_raised(self):
        with trio.fail_after(LIMIT), pytest.raises(KeyError, match="mine"):
            async with Libp2pTransport.start(NodeKey.generate()):
                raise KeyError("mine")

    async def test_a_member_does_not_dial_a_stranger(self, pair):
        a, _, _, _ = pair
        with trio.fail_after(LIMIT):
            async with running([NodeKey.generate()], None) as (s,):
                with pytest.raises(TransportError, match="not in the consortium"):
                    await a.connect(s.listen_addrs[0])

    async def test_fetch_rejects_bytes_that_do_not_match_the_digest(self, pair):
        a, b, _, _ = pair
        b.offer(digest(b"what was announced"), b"something else")
        with trio.fail_after(LIMIT), pytest.raises(BadPayload, match="do not match") as info:
            await a.fetch(b.peer_id, digest(b"what was announced"), 1 << 20)
        assert info.value.reason == "digest-mismatch"

    async def test_an_oversized_control_message_is_refused(self, pair):
        a, b, _, _ = pair
        with trio.fail_after(LIMIT), pytest.raises(TransportError, match="exceeds"):
            await a.send(b.peer_id, bytes(a.config.max_control_bytes + 1))

    async def test_a_fetch_that_exceeds_its_deadline_raises(self, pair):
        _, _, spares, consortium = pair
        slow_key, stall_key = spares
        gave_up = trio.Event()

        async def stall(stream):  # accepts the request, never answers
            await gave_up.wait()
            await stream.reset()

        with trio.fail_after(LIMIT):
            async with (running([slow_key], consortium, Libp2pConfig(fetch_timeout=0.5)) as (s,),
                        raw_host(stall_key.key_pair, "noise") as host):
                host.set_stream_handler(WEIGHTS_PROTOCOL, stall)
                await host.connect(peer_info(s))
                await s.wait_for_neighbour(stall_key.peer_id)
                with pytest.raises(TransportError, match="timed out"):
                    await s.fetch(stall_key.peer_id, digest(b"x"), 10)
                gave_up.set()

    async def test_a_restarted_neighbour_is_redialled_at_once(self, pair):
        a, _, (spare, _), consortium = pair
        with trio.fail_after(LIMIT):
            async with running([spare], consortium) as (s,):
                await link(a, s)
                await a.send(s.peer_id, b"before")  # caches a control stream to s
                assert bytes((await s.receive()).data) == b"before"
                old_addr = s.listen_addrs[0]
            # s is gone: dialling its old address fails and puts it in libp2p's
            # negative dial cache...
            with pytest.raises(TransportError):
                await a.connect(old_addr)
            # ...which connect() lifts, so the restarted peer is reachable at once.
            async with running([spare], consortium) as (s2,):
                await link(a, s2)
                await a.send(s2.peer_id, b"after")
                env = await s2.receive()
        assert (env.sender, bytes(env.data)) == (a.peer_id, b"after")
