"""The optional pre-shared network key: file format, and that it fences the swarm."""

from __future__ import annotations

import os
from contextlib import AsyncExitStack

import pytest
import trio

from gossip.errors import TransportError
from gossip.libp2p_identity import Consortium, IdentityError, Member, NodeKey
from gossip.libp2p_netkey import generate_network_key_file, load_network_key
from gossip.libp2p_transport import Libp2pTransport

LOOPBACK = "/ip4/127.0.0.1/tcp/0"
LIMIT = 30


def test_a_generated_network_key_is_private_and_loads_back(tmp_path):
    path = tmp_path / "swarm.key"
    generate_network_key_file(path)
    assert os.stat(path).st_mode & 0o777 == 0o600
    key = load_network_key(path)
    assert len(key) == 32
    other = tmp_path / "other.key"
    generate_network_key_file(other)
    assert load_network_key(other) != key
    with pytest.raises(IdentityError, match="refusing to overwrite"):
        generate_network_key_file(path)


@pytest.mark.parametrize("text", ["", "/key/swarm/psk/1.0.0/\n/base16/\nabc\n",
                                  "/key/swarm/psk/1.0.0/\n/base64/\n" + "ab" * 32 + "\n",
                                  "/base16/\n" + "ab" * 32 + "\n"])
def test_a_malformed_network_key_file_is_refused(tmp_path, text):
    path = tmp_path / "swarm.key"
    path.write_text(text)
    path.chmod(0o600)
    with pytest.raises(IdentityError) as info:
        load_network_key(path)
    assert info.value.reason == "bad-network-key"


def test_a_network_key_readable_by_others_or_missing_is_refused(tmp_path):
    path = tmp_path / "swarm.key"
    generate_network_key_file(path)
    path.chmod(0o644)
    with pytest.raises(IdentityError, match="chmod 600"):
        load_network_key(path)
    with pytest.raises(IdentityError, match="not found"):
        load_network_key(tmp_path / "nope.key")


async def _try_link(dialer_psk: bytes | None, listener_psk: bytes | None) -> bool:
    """Whether two members with these network keys end up neighbours."""
    keys = [NodeKey.generate(), NodeKey.generate()]
    consortium = Consortium([Member(f"h{i}", k.peer_id) for i, k in enumerate(keys)])
    async with AsyncExitStack() as stack:
        listener = await stack.enter_async_context(
            Libp2pTransport.start(keys[0], LOOPBACK, consortium, network_key=listener_psk))
        dialer = await stack.enter_async_context(
            Libp2pTransport.start(keys[1], LOOPBACK, consortium, network_key=dialer_psk))
        with trio.fail_after(LIMIT):
            try:
                await dialer.connect(listener.listen_addrs[0])
            except TransportError:
                return False
            await listener.wait_for_neighbour(dialer.peer_id)
            await dialer.send(listener.peer_id, b"inside")
            env = await listener.receive()
            return bytes(env.data) == b"inside"


async def test_members_sharing_the_network_key_connect():
    psk = os.urandom(32)
    assert await _try_link(psk, psk)


@pytest.mark.parametrize("dialer, listener", [("a", "b"), (None, "b")])
async def test_a_member_without_the_same_network_key_cannot_connect(dialer, listener):
    keys = {"a": os.urandom(32), "b": os.urandom(32), None: None}
    assert not await _try_link(keys[dialer], keys[listener])


async def test_a_network_key_of_the_wrong_length_is_refused():
    with pytest.raises(TransportError, match="32 bytes"):
        async with Libp2pTransport.start(NodeKey.generate(), LOOPBACK, None, network_key=b"short"):
            pass
