"""What a peer advertises (``--announce`` or its listen addresses) and dial-address parsing."""

from __future__ import annotations

import multiaddr
import pytest
from libp2p.crypto.ed25519 import create_new_key_pair

from gossip.errors import TransportError
from gossip.libp2p_addrs import default_announce, parse_announce, peer_of
from gossip.libp2p_identity import NodeKey

# seeded: the ids are part of the test names, which every xdist worker must collect alike
ME = NodeKey.from_pair(create_new_key_pair(bytes(32))).peer_id
OTHER = NodeKey.from_pair(create_new_key_pair(bytes([1] * 32))).peer_id


def test_a_concrete_listen_address_is_advertised_as_is_with_the_peer_id():
    assert default_announce([f"/ip4/127.0.0.1/tcp/4001/p2p/{ME}"], ME) == [f"/ip4/127.0.0.1/tcp/4001/p2p/{ME}"]
    assert default_announce(["/ip4/10.1.2.3/tcp/4001"], ME) == [f"/ip4/10.1.2.3/tcp/4001/p2p/{ME}"]


def test_a_wildcard_listen_address_is_replaced_by_the_interfaces_addresses():
    seen = []

    def interfaces(addr):
        seen.append(str(addr))
        return [multiaddr.Multiaddr("/ip4/192.0.2.7/tcp/4001"), multiaddr.Multiaddr("/ip4/10.0.0.7/tcp/4001")]

    out = default_announce([f"/ip4/0.0.0.0/tcp/4001/p2p/{ME}"], ME, expand=interfaces)

    assert seen == ["/ip4/0.0.0.0/tcp/4001"]
    assert out == [f"/ip4/192.0.2.7/tcp/4001/p2p/{ME}", f"/ip4/10.0.0.7/tcp/4001/p2p/{ME}"]
    assert not any("0.0.0.0" in a for a in out)


@pytest.mark.parametrize("found", [[], ["/ip4/0.0.0.0/tcp/4001"], None])
def test_a_wildcard_with_no_usable_interface_advertises_nothing(found):
    def interfaces(addr):
        if found is None:
            raise OSError("no interfaces")
        return [multiaddr.Multiaddr(a) for a in found]

    assert default_announce(["/ip4/0.0.0.0/tcp/4001", "/ip6/::/tcp/4001"], ME, expand=interfaces) == []


def test_the_real_interface_lookup_never_returns_a_wildcard():
    out = default_announce(["/ip4/0.0.0.0/tcp/4001"], ME)
    assert all("/ip4/0.0.0.0/" not in a and a.endswith(f"/p2p/{ME}") for a in out)


@pytest.mark.parametrize("text, expected", [
    ("/ip4/203.0.113.5/tcp/4001", f"/ip4/203.0.113.5/tcp/4001/p2p/{ME}"),
    ("/dns4/hospital-a.example/tcp/4001", f"/dns4/hospital-a.example/tcp/4001/p2p/{ME}"),
    (f"/ip6/2001:db8::5/tcp/4001/p2p/{ME}", f"/ip6/2001:db8::5/tcp/4001/p2p/{ME}"),
])
def test_announce_addresses_get_the_own_peer_id(text, expected):
    assert parse_announce(text, ME) == expected


@pytest.mark.parametrize("text, needle", [
    ("/ip4/0.0.0.0/tcp/4001", "not dialable"),
    ("/ip6/::/tcp/4001", "not dialable"),
    ("/ip4/203.0.113.5/tcp/0", "not dialable"),
    ("/ip4/203.0.113.5/udp/4001", "must be"),
    ("/ip4/203.0.113.5/tcp/4001/ws", "must be"),
    (f"/ip4/203.0.113.5/tcp/4001/p2p/{OTHER}", "another peer"),
    ("not a multiaddr", "bad --announce"),
])
def test_bad_announce_addresses_are_refused_with_a_reason(text, needle):
    with pytest.raises(TransportError, match=needle):
        parse_announce(text, ME)


def test_peer_of_reads_the_peer_id_of_a_dial_address():
    assert peer_of(f"/ip4/10.0.0.1/tcp/1/p2p/{OTHER}") == OTHER
    for bad in ["/ip4/10.0.0.1/tcp/1", "/ip4/10.0.0.1/tcp/notaport/p2p/x", "garbage"]:
        with pytest.raises(TransportError, match="bad peer address"):
            peer_of(bad)
