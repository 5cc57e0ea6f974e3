"""The addresses a peer advertises to others, and the peer id inside a dial address.

A peer listening on ``0.0.0.0`` (or ``::``) must not tell others to dial ``0.0.0.0``: that
is each dialer's own host. :func:`default_announce` replaces such a wildcard by the
machine's interface addresses, as py-libp2p 0.8.1 lists them
(``libp2p.utils.address_validation.expand_wildcard_address``, which reads the interfaces
through ``multiaddr.utils.get_network_addrs`` and skips loopback); an operator behind NAT
or in a container names the right ones with ``--announce`` (:func:`parse_announce`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

import multiaddr
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.utils.address_validation import expand_wildcard_address

from gossip.errors import TransportError
from gossip.libp2p_host import describe_error

_HOSTS = ("ip4", "ip6", "dns", "dns4", "dns6")

#: Concrete addresses for a wildcard listen address (default: the interfaces' addresses).
Expand = Callable[[multiaddr.Multiaddr], list[multiaddr.Multiaddr]]


def peer_of(addr: str) -> str:
    """The peer id of a dial address ``.../p2p/<peer id>``.

    Raises ``TransportError`` if ``addr`` is not a multiaddr ending in ``/p2p/<peer id>``.
    """
    try:
        return str(info_from_p2p_addr(multiaddr.Multiaddr(addr)).peer_id)
    except Exception as err:
        raise TransportError(f"bad peer address {addr!r} (need .../p2p/<peer id>): "
                             f"{describe_error(err)}") from err


def _wildcard(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def parse_announce(text: str, peer_id: str) -> str:
    """Check one ``--announce`` address and return it ending in ``/p2p/<peer_id>``.

    Accepted: ``/ip4|ip6|dns|dns4|dns6/<host>/tcp/<port>[/p2p/<peer_id>]`` with a concrete
    host (not ``0.0.0.0`` or ``::``) and a port other than 0.

    Raises ``TransportError`` with a one-line reason otherwise.
    """
    try:
        maddr = multiaddr.Multiaddr(text)
        names = [p.name for p in maddr.protocols()]
    except Exception as err:
        raise TransportError(f"bad --announce {text!r}: {describe_error(err)}") from err
    if not (len(names) in (2, 3) and names[0] in _HOSTS and names[1] == "tcp"
            and (len(names) == 2 or names[2] == "p2p")):
        raise TransportError(f"--announce must be /ip4|ip6|dns|dns4|dns6/<host>/tcp/<port>"
                             f"[/p2p/<own id>], got {text!r}")
    host = maddr.value_for_protocol(names[0])
    if _wildcard(host) or int(maddr.value_for_protocol("tcp")) == 0:
        raise TransportError(f"--announce {text!r} is not dialable: name a concrete host and port")
    if len(names) == 3:
        if maddr.value_for_protocol("p2p") != peer_id:
            raise TransportError(f"--announce {text!r} names another peer than this one ({peer_id})")
        return text
    return f"{text}/p2p/{peer_id}"


def default_announce(listen_addrs: list[str], peer_id: str,
                     expand: Expand = expand_wildcard_address) -> list[str]:
    """What to advertise without ``--announce``: the listen addresses, wildcards expanded.

    ``listen_addrs`` are the host's bound addresses (with or without ``/p2p/``). A wildcard
    one is replaced by the concrete addresses ``expand`` finds; any wildcard left over is
    dropped, so the result may be empty (the caller logs that ``--announce`` is needed).
    """
    out: list[str] = []
    for text in listen_addrs:
        maddr = multiaddr.Multiaddr(text)
        if "p2p" in [p.name for p in maddr.protocols()]:
            maddr = maddr.decapsulate(multiaddr.Multiaddr(f"/p2p/{maddr.value_for_protocol('p2p')}"))
        names = [p.name for p in maddr.protocols()]
        concrete = [maddr]
        if names and names[0] in ("ip4", "ip6") and _wildcard(maddr.value_for_protocol(names[0])):
            try:
                concrete = list(expand(maddr))
            except Exception:  # noqa: BLE001 - interface enumeration is best effort
                concrete = []
        for addr in concrete:
            first = addr.protocols()[0].name if list(addr.protocols()) else ""
            if first in ("ip4", "ip6") and _wildcard(addr.value_for_protocol(first)):
                continue
            full = f"{addr}/p2p/{peer_id}"
            if full not in out:
                out.append(full)
    return out
