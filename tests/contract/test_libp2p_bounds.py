"""Bounds of ``Libp2pTransport``'s control streams against a member that misbehaves on the
wire: idle streams are closed, streams per peer and messages per second are capped, framing
errors are counted. The member is a bare py-libp2p host with a consortium key; every wait
is on a stream event (a frame received, the stream ending), none on a sleep."""

from __future__ import annotations

from contextlib import asynccontextmanager

import pytest
import trio
from libp2p.host.exceptions import StreamFailure
from libp2p.peer.id import ID

from gossip import libp2p_framing as fr
from gossip.libp2p_identity import Consortium, Member, NodeKey
from gossip.libp2p_transport import CONTROL_PROTOCOL, Libp2pConfig
from gossip.rate_limit import TokenBucket
from tests.contract.test_transport_contract import LIMIT, peer_info, raw_host, running



async def ended(stream) -> None:
    """Return once the far end has closed or reset ``stream``."""
    while True:
        try:
            if not await stream.read(1024):
                return
        except Exception:  # noqa: BLE001 - a reset ends it too
            return


@pytest.fixture
def members():
    """The keys of a (the transport) and m (the bare host), and their consortium."""
    a_key, m_key = NodeKey.generate(), NodeKey.generate()
    return a_key, m_key, Consortium([Member("a", a_key.peer_id), Member("m", m_key.peer_id)])


async def open_control(host, a):
    return await host.new_stream(ID.from_base58(a.peer_id), [CONTROL_PROTOCOL])


@asynccontextmanager
async def member_on(members, config: Libp2pConfig):
    """The transport a (with ``config``) and the bare host m, connected to it."""
    a_key, m_key, consortium = members
    async with running([a_key], consortium, config) as (a,):
        async with raw_host(m_key.key_pair, "noise") as host:
            await host.connect(peer_info(a))
            yield a, host


async def test_an_idle_control_stream_is_closed_after_the_timeout(members):
    with trio.fail_after(LIMIT):
        async with member_on(members, Libp2pConfig(control_idle_timeout=0.3)) as (a, host):
            stream = await open_control(host, a)
            await stream.write(fr.encode_control(b"one"))
            assert bytes((await a.receive()).data) == b"one"

            await ended(stream)  # then silence: a closes it

    assert a._control.idle_closed == 1
    assert a.bad_control == 0  # idle is not misbehaviour


async def test_control_streams_beyond_the_cap_per_peer_are_reset_and_counted(members):
    with trio.fail_after(LIMIT):
        async with member_on(members, Libp2pConfig(max_control_streams=2)) as (a, host):
            for i in range(2):  # two streams, each served (its frame arrives)
                stream = await open_control(host, a)
                await stream.write(fr.encode_control(b"%d" % i))
                await a.receive()
            try:  # a resets the third at once: before or after it is fully opened
                third = await open_control(host, a)
                await third.write(fr.encode_control(b"third"))
                await ended(third)
            except StreamFailure:
                pass
            refused = a.refused_control

    assert refused["too-many-streams"] == 1
    assert a.bad_control == 1


async def test_a_framing_error_resets_the_stream_and_is_counted(members):
    with trio.fail_after(LIMIT):
        async with member_on(members, Libp2pConfig(max_control_bytes=100)) as (a, host):
            stream = await open_control(host, a)
            await stream.write(fr.CONTROL_HEADER.pack(2**32 - 1))  # a frame far over the limit

            await ended(stream)

    assert a.refused_control["bad-frame"] == 1
    assert a.bad_control == 1


async def test_control_messages_beyond_the_rate_are_dropped_and_counted(members):
    config = Libp2pConfig(control_rate=0.001, control_burst=3)  # no refill within the test
    with trio.fail_after(LIMIT):
        async with member_on(members, config) as (a, host):
            stream = await open_control(host, a)
            for i in range(10):
                await stream.write(fr.encode_control(b"%d" % i))
            await stream.close()

            await ended(stream)  # a has read every frame and closed its side
            got = [bytes((await a.receive()).data) for _ in range(3)]

    assert got == [b"0", b"1", b"2"]
    assert a.refused_control["rate-limited"] == 7
    assert a.dropped == 0


def test_the_token_bucket_allows_a_burst_then_the_rate():
    bucket = TokenBucket(rate=2.0, burst=3, now=0.0)

    first = [bucket.take(0.0) for _ in range(5)]
    later = [bucket.take(1.0) for _ in range(3)]  # one second refills two tokens

    assert first == [True, True, True, False, False]
    assert later == [True, True, False]
