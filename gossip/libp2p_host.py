"""A py-libp2p host that speaks Noise only, over TCP only, to consortium members only.

py-libp2p 0.8.1's ``new_host()`` defaults accept ``/plaintext/2.0.0`` and secio, with
which a dialer can claim any peer id, and pick QUIC (its own TLS, outside the security
transports given to the host) for a ``/quic`` listen address. :func:`new_gated_host`
removes all of that: TCP transport, Noise as the sole security protocol, Yamux as the
sole muxer, and :class:`AllowListSecurity` wrapped around Noise so a peer outside the
allow-list is dropped right after the handshake, before the muxer is even negotiated.

Also here: the small helpers that translate library exceptions into one-line
``TransportError`` messages at the boundary.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable

import multiaddr
import trio
from libp2p import new_host
from libp2p.abc import IHost, IRawConnection, ISecureConn, ISecureTransport
from libp2p.crypto.x25519 import create_new_key_pair as new_x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.network.config import RetryConfig
from libp2p.network.swarm import Swarm
from libp2p.peer.id import ID
from libp2p.security.exceptions import HandshakeFailure
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux
from libp2p.transport.tcp.tcp import TCP

from gossip.errors import TransportError
from gossip.libp2p_identity import NodeKey

log = logging.getLogger(__name__)


def new_gated_host(key: NodeKey, listen: multiaddr.Multiaddr, allows: Callable[[str], bool],
                   dial_retries: int, network_key: bytes | None = None) -> tuple[IHost, Swarm]:
    """Build (not start) a Noise-only, Yamux-only, TCP-only host admitting ``allows`` peers.

    ``listen`` must come from :func:`parse_tcp_listen_addr`. ``dial_retries`` replaces
    py-libp2p's 3 retries with backoff per address. ``network_key`` (32 bytes) makes it a
    private network (see ``gossip.libp2p_netkey``).
    """
    noise = NoiseTransport(key.key_pair, noise_privkey=new_x25519_key_pair().private_key)
    host = new_host(
        key_pair=key.key_pair,
        sec_opt={NOISE_PROTOCOL_ID: AllowListSecurity(noise, allows, key.peer_id)},
        muxer_opt={TProtocol(YAMUX_PROTOCOL_ID): Yamux},
        listen_addrs=[listen],
        transports=[TCP()],  # TCP only, whatever an address says
        psk=network_key.hex() if network_key is not None else None,
    )
    swarm = host.get_network()
    if not isinstance(swarm, Swarm):  # pragma: no cover - new_host always builds one
        raise TransportError(f"unexpected libp2p network {type(swarm).__name__}")
    swarm.retry_config = RetryConfig(max_retries=dial_retries)
    return host, swarm


class AllowListSecurity(ISecureTransport):
    """Noise, then refuse the connection if the authenticated peer is not allowed.

    Raising ``HandshakeFailure`` makes libp2p's upgrader drop the connection before the
    muxer is negotiated, so no stream (not even identify or ping) can be opened on it.
    Outbound connections are checked too: a member never completes a dial to a stranger.
    """

    def __init__(self, inner: ISecureTransport, allows: Callable[[str], bool], own: str) -> None:
        self._inner = inner
        self._allows = allows
        self._own = own

    async def _admit(self, conn: ISecureConn, direction: str) -> ISecureConn:
        remote = str(conn.get_remote_peer())
        if self._allows(remote):
            return conn
        log.warning("event=refused-peer peer=%s remote=%s direction=%s reason=not-in-consortium",
                    self._own, remote, direction)
        try:
            await conn.close()
        except Exception:  # noqa: BLE001, S110 - the connection is being dropped either way
            pass
        raise HandshakeFailure(f"peer {remote} is not in the consortium")

    async def secure_inbound(self, conn: IRawConnection) -> ISecureConn:
        """Noise as responder, then the allow-list."""
        return await self._admit(await self._inner.secure_inbound(conn), "inbound")

    async def secure_outbound(self, conn: IRawConnection, peer_id: ID) -> ISecureConn:
        """Noise as initiator (py-libp2p checks ``peer_id``), then the allow-list."""
        return await self._admit(await self._inner.secure_outbound(conn, peer_id), "outbound")


def parse_tcp_listen_addr(text: str) -> multiaddr.Multiaddr:
    """Parse ``/ip4|ip6/<host>/tcp/<port>`` and check a fixed port is free.

    Anything else is refused: other transports would bypass the Noise-only gate. And as
    py-libp2p 0.8.1 listens with SO_REUSEPORT (for hole punching), a second peer started
    by mistake on a busy port would bind silently and take part of the inbound
    connections; a plain probe bind (SO_REUSEADDR only) fails instead. (The probe is
    best effort: a process binding the port right after it is not detected.)
    """
    try:
        maddr = multiaddr.Multiaddr(text)
        names = [p.name for p in maddr.protocols()]
    except Exception as err:
        raise TransportError(f"bad listen address {text!r}: {describe_error(err)}") from err
    if len(names) != 2 or names[0] not in ("ip4", "ip6") or names[1] != "tcp":
        raise TransportError(f"listen address must be /ip4|ip6/<host>/tcp/<port>, got {text!r}")
    port = int(maddr.value_for_protocol("tcp"))
    if port != 0:
        family = socket.AF_INET if names[0] == "ip4" else socket.AF_INET6
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((maddr.value_for_protocol(names[0]), port))
            except OSError as err:
                raise TransportError(f"cannot listen on {text}: {err.strerror}") from None
    return maddr


def sole_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """The only exception inside nested exception groups, unless it is a cancellation."""
    leaves: list[BaseException] = []
    pending: list[BaseException] = [group]
    while pending:
        e = pending.pop()
        if isinstance(e, BaseExceptionGroup):
            pending.extend(e.exceptions)
        else:
            leaves.append(e)
    if len(leaves) == 1 and not isinstance(leaves[0], trio.Cancelled):
        return leaves[0]
    return None


def describe_error(err: BaseException) -> str:
    """One line for an exception, flattening exception groups and following causes."""
    if isinstance(err, BaseExceptionGroup):
        return "; ".join(describe_error(e) for e in err.exceptions)[:300]
    text = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
    if err.__cause__ is not None and len(text) < 200:
        text += f" (from {describe_error(err.__cause__)})"
    return text[:300]
