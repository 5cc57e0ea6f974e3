"""``AsyncTransport`` over py-libp2p: Noise-only TCP links between consortium members.

Security (see :mod:`gossip.libp2p_host`). The host speaks TCP, Noise and Yamux only, with
an Ed25519 identity. The consortium check sits *inside* the security step: right after
the Noise handshake, a peer outside the allow-list is dropped before the muxer is
negotiated, so it never gets a stream, not even identify or ping. Every medswarm stream
handler checks the remote peer again.

Control messages go over ``/medswarm/control/1``: one long-lived stream per neighbour and
direction, length-prefixed frames (:mod:`gossip.libp2p_control_streams`), with per-peer
bounds on incoming streams, idle time and message rate (``Libp2pConfig``). Not gossipsub: the
protocol layer only needs "send these bytes to that neighbour", and a direct stream gives
exactly that, with the link's authenticated peer id as sender, in order, with no mesh to
form first and none of gossipsub's silent drops (size, rate, 32-message queue). The one
queue that can drop is ours (``receive_queue``), as in the in-memory transport.

Weights are pulled over ``/medswarm/weights/1``, one stream per fetch, bounded by
``max_bytes`` and ``fetch_timeout``; the fetcher checks the bytes hash to the digest it
asked for and acknowledges (:mod:`gossip.libp2p_weights`).

This module runs the host and decides who may talk: open transport, neighbour, allow-list
checks on every call and incoming stream; the two protocol modules above move the bytes.

Only ``TransportError`` (and its subclasses) leaves this module: library exceptions,
including the bare exception groups ``connect`` can raise, are translated here.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import multiaddr
import trio
from libp2p.abc import IHost, INetConn, INetStream, INetwork, INotifee
from libp2p.network.swarm import Swarm
from libp2p.peer.peerinfo import info_from_p2p_addr

from gossip.control import MAX_CONTROL_BYTES
from gossip.errors import TransportError
from gossip.libp2p_control_streams import CONTROL_PROTOCOL, ControlStreams
from gossip.libp2p_host import describe_error, new_gated_host, parse_tcp_listen_addr, sole_leaf
from gossip.libp2p_identity import Consortium, NodeKey
from gossip.libp2p_streams import remote_peer, reset_quietly
from gossip.libp2p_weights import WEIGHTS_PROTOCOL, WeightsService
from gossip.transport import MAX_OFFERS, Envelope, Payload

log = logging.getLogger(__name__)

__all__ = ["CONTROL_PROTOCOL", "WEIGHTS_PROTOCOL", "Libp2pConfig", "Libp2pTransport"]


@dataclass(frozen=True)
class Libp2pConfig:
    """Limits and deadlines of a :class:`Libp2pTransport`; checked on construction.

    Raises ``TransportError`` naming the field for a non-positive value.
    """

    max_control_bytes: int = MAX_CONTROL_BYTES  #: largest control message sent or accepted
    max_payload_bytes: int = 1 << 30  #: largest payload offered or served, whatever is asked
    receive_queue: int = 1024  #: control messages buffered for ``receive``; more are dropped
    max_offers: int = MAX_OFFERS  #: offers kept; the oldest is forgotten first
    fetch_timeout: float = 120.0  #: whole fetch, request to acknowledgement, in seconds
    serve_timeout: float = 300.0  #: how long a served fetch may take before it is reset
    send_timeout: float = 10.0  #: opening the control stream and writing one frame
    dial_timeout: float = 10.0  #: one ``connect`` call
    dial_retries: int = 1  #: retries per address inside one ``connect`` (libp2p default: 3)
    chunk_bytes: int = 1 << 20  #: payload write size
    max_control_streams: int = 4  #: incoming control streams open at once per peer; more are reset
    control_idle_timeout: float = 60.0  #: an incoming control stream silent this long is closed
    control_rate: float = 100.0  #: control messages per second accepted per peer on average ...
    control_burst: int = 500  #: ... and in a burst; the excess is dropped and counted

    def __post_init__(self) -> None:
        for name in ("max_control_bytes", "max_payload_bytes", "receive_queue", "max_offers",
                     "fetch_timeout", "serve_timeout", "send_timeout", "dial_timeout",
                     "chunk_bytes", "max_control_streams", "control_idle_timeout",
                     "control_rate", "control_burst"):
            if not getattr(self, name) > 0:
                raise TransportError(f"config: {name} must be > 0, got {getattr(self, name)!r}")
        if self.dial_retries < 0:
            raise TransportError(f"config: dial_retries must be >= 0, got {self.dial_retries}")


class _Watcher(INotifee):
    """Wakes ``wait_for_neighbour`` and drops cached control streams on (dis)connection."""

    def __init__(self, transport: Libp2pTransport) -> None:
        self._t = transport

    async def connected(self, network: INetwork, conn: INetConn) -> None:
        self._t._links_changed()

    async def disconnected(self, network: INetwork, conn: INetConn) -> None:
        self._t._control.forget(str(conn.muxed_conn.peer_id))
        self._t._links_changed()

    async def opened_stream(self, network: INetwork, stream: INetStream) -> None:
        return None

    async def closed_stream(self, network: INetwork, stream: INetStream) -> None:
        return None

    async def listen(self, network: INetwork, multiaddr: Any) -> None:
        return None

    async def listen_close(self, network: INetwork, multiaddr: Any) -> None:
        return None


class Libp2pTransport:
    """One peer on a py-libp2p host (see ``gossip.transport.AsyncTransport``).

    Build it with :meth:`start`, which runs the host for the duration of an
    ``async with`` block. ``consortium=None`` means open: any peer may connect.

    Errors: ``TransportError`` for a closed transport, a peer that is not a connected
    neighbour, a missing or oversized offer, a digest mismatch, a timeout or any failure
    of the underlying connection.
    """

    def __init__(self, host: IHost, swarm: Swarm, key: NodeKey, consortium: Consortium | None,
                 config: Libp2pConfig, nursery: trio.Nursery) -> None:
        """Internal: use :meth:`start`."""
        self._host = host
        self._swarm = swarm
        self._key = key
        self._consortium = consortium
        self.config = config
        self._nursery = nursery
        self._control = ControlStreams(host, key.peer_id, config, nursery)
        self._weights = WeightsService(host, key.peer_id, config)
        self._changed = trio.Event()
        self._closed = False
        self._shutdown_done: trio.Event | None = None

    @property
    def dropped(self) -> int:
        """Control messages dropped because ``receive`` was not keeping up."""
        return self._control.dropped

    @property
    def bytes_served(self) -> int:
        """Payload bytes served to neighbours that acknowledged them (weights sent)."""
        return self._weights.bytes_served

    @property
    def refused_control(self) -> dict[str, int]:
        """Control input refused here, by reason: ``bad-frame`` (a framing error),
        ``too-many-streams`` (over ``max_control_streams``), ``rate-limited`` (over
        ``control_rate``)."""
        return dict(self._control.refused)

    @property
    def bad_control(self) -> int:
        """All control input refused here (``refused_control``); the peer adds it to its own."""
        return sum(self._control.refused.values())

    # ------------------------------------------------------------------ lifecycle
    @classmethod
    @asynccontextmanager
    async def start(cls, key: NodeKey, listen_addr: str = "/ip4/127.0.0.1/tcp/0",
                    consortium: Consortium | None = None,
                    config: Libp2pConfig | None = None,
                    network_key: bytes | None = None) -> AsyncIterator[Libp2pTransport]:
        """Run a host listening on ``listen_addr`` until the block exits, then close it.

        With ``network_key`` only hosts holding the same pre-shared key can connect
        (``gossip.libp2p_netkey``).

        Raises
        ------
        TransportError
            If ``key`` is not in ``consortium``, the address is malformed or cannot be
            listened on.
        """
        config = config or Libp2pConfig()
        if consortium is not None and not consortium.allows(key.peer_id):
            raise TransportError(f"own peer id {key.peer_id} is not in the consortium")
        maddr = parse_tcp_listen_addr(listen_addr)
        allows = consortium.allows if consortium is not None else (lambda _peer: True)
        if network_key is not None and len(network_key) != 32:
            raise TransportError(f"a network key has 32 bytes, got {len(network_key)}")
        host, swarm = new_gated_host(key, maddr, allows, config.dial_retries, network_key)
        failure: BaseException | None = None
        yielded = False
        try:
            async with trio.open_nursery() as nursery:
                t = cls(host, swarm, key, consortium, config, nursery)
                host.set_stream_handler(CONTROL_PROTOCOL, t._serve_control)
                host.set_stream_handler(WEIGHTS_PROTOCOL, t._serve_weights)
                t._swarm.register_notifee(_Watcher(t))
                try:
                    async with host.run([maddr]):
                        try:
                            if not host.get_addrs():  # py-libp2p logs why, raises nothing
                                failure = TransportError(f"cannot listen on {listen_addr}")
                            else:
                                # py-libp2p redials every peer in its peerstore towards 150
                                # connections; whom to dial is the peer driver's decision.
                                await t._swarm.auto_connector.stop()
                                log.info("event=listening peer=%s addrs=%s", key.peer_id,
                                         t.listen_addrs)
                                yielded = True
                                yield t
                        finally:  # close connections before py-libp2p stops its services
                            t.close()
                            await t._shutdown()
                finally:
                    t.close()
                    await t._shutdown()  # no-op unless host.run itself failed
                    nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            # The body's own exception comes out wrapped in the groups of py-libp2p's
            # nurseries and ours: hand it back as raised (cancellations stay grouped).
            failure = sole_leaf(group)
            if failure is None:
                raise
        except Exception as err:  # noqa: BLE001 - re-raised below, translated if at start-up
            failure = err
        if failure is not None:
            if not yielded and not isinstance(failure, TransportError):
                raise TransportError(f"cannot start on {listen_addr}: "
                                     f"{describe_error(failure)}") from failure
            raise failure

    def close(self) -> None:
        """Stop sending, receiving and serving; later calls raise ``TransportError``.

        A ``receive`` waiting at that moment raises ``TransportError`` too. The host's
        connections are closed in the background (and at the latest when the ``start``
        block exits), so neighbours see this peer leave.
        """
        if self._closed:
            return
        self._closed = True
        self._weights.clear()
        self._control.close()
        self._links_changed()
        self._nursery.start_soon(self._shutdown)
        log.info("event=closed peer=%s", self.peer_id)

    async def _shutdown(self) -> None:
        if self._shutdown_done is not None:
            await self._shutdown_done.wait()
            return
        self._shutdown_done = trio.Event()
        with trio.CancelScope(shield=True), trio.move_on_after(5.0):
            try:
                await self._host.close()
            except Exception as err:  # noqa: BLE001 - best effort: we are leaving anyway
                log.warning("event=close-failed peer=%s detail=%s", self.peer_id,
                            describe_error(err))
        self._shutdown_done.set()

    def _check_open(self) -> None:
        if self._closed:
            raise TransportError(f"transport of {self.peer_id} is closed")

    # ------------------------------------------------------------------ peers
    @property
    def peer_id(self) -> str:
        """This peer's id (base58, ``12D3KooW...``)."""
        return self._key.peer_id

    @property
    def listen_addrs(self) -> list[str]:
        """Addresses neighbours can ``connect`` to, each ending in ``/p2p/<peer id>``."""
        return [str(a) for a in self._host.get_addrs()]

    def _allowed(self, peer: str) -> bool:
        return self._consortium is None or self._consortium.allows(peer)

    def neighbours(self) -> list[str]:
        """Sorted ids of allowed peers with an open connection (``[]`` once closed)."""
        if self._closed:
            return []
        conns = self._swarm.get_connections_map()
        return sorted(str(p) for p, cs in conns.items()
                      if any(not c.is_closed for c in cs) and self._allowed(str(p))
                      and str(p) != self.peer_id)

    def _links_changed(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def wait_for_neighbour(self, peer: str) -> None:
        """Return once ``peer`` is a neighbour (event-driven; bound it with a timeout)."""
        while peer not in self.neighbours():
            self._check_open()
            await self._changed.wait()

    async def connect(self, addr: str) -> str:
        """Dial ``addr`` (``.../p2p/<peer id>``) and return the peer id once connected.

        Dialling is always deliberate: the peer's previously known addresses are replaced
        by ``addr`` and it is lifted out of libp2p's 60 s negative dial cache, so a
        neighbour restarted on another port can be reached at once.

        Raises
        ------
        TransportError
            Malformed address, own id, a peer outside the consortium (checked before
            dialling, and again after the handshake), timeout or refused connection.
        """
        self._check_open()
        try:
            info = info_from_p2p_addr(multiaddr.Multiaddr(addr))
        except Exception as err:
            raise TransportError(f"bad peer address {addr!r} (need .../p2p/<peer id>): "
                                 f"{describe_error(err)}") from err
        peer = str(info.peer_id)
        if peer == self.peer_id:
            raise TransportError("refusing to connect to myself")
        if not self._allowed(peer):
            raise TransportError(f"{peer} is not in the consortium")
        # A deliberate dial: forget addresses learnt earlier (py-libp2p dials only one
        # TCP address per peer, possibly a stale one) and lift the negative dial cache.
        self._swarm.peerstore.clear_addrs(info.peer_id)
        self._swarm.unblock_peer(info.peer_id)
        try:
            with trio.fail_after(self.config.dial_timeout):
                await self._host.connect(info)
        except trio.TooSlowError:
            raise TransportError(f"connecting to {peer} timed out after "
                                 f"{self.config.dial_timeout} s") from None
        except Exception as err:
            raise TransportError(f"cannot connect to {peer}: {describe_error(err)}") from err
        log.info("event=connected peer=%s to=%s", self.peer_id, peer)
        return peer

    def _check_neighbour(self, peer: str) -> None:
        self._check_open()
        if peer not in self.neighbours():
            raise TransportError(f"{peer} is not a neighbour of {self.peer_id}")

    async def _admit(self, stream: INetStream, protocol: str) -> bool:
        """Whether an incoming stream may be served; a refused one is reset."""
        remote = remote_peer(stream)
        if self._closed or not self._allowed(remote):
            log.warning("event=refused-stream peer=%s remote=%s protocol=%s closed=%s",
                        self.peer_id, remote, protocol, self._closed)
            await reset_quietly(stream)
            return False
        return True

    async def _serve_control(self, stream: INetStream) -> None:
        if await self._admit(stream, CONTROL_PROTOCOL):
            await self._control.serve(stream)

    async def _serve_weights(self, stream: INetStream) -> None:
        if await self._admit(stream, WEIGHTS_PROTOCOL):
            await self._weights.serve(stream)

    # ------------------------------------------------------------------ control
    async def send(self, peer: str, data: bytes) -> None:
        """Send one control message to the connected neighbour ``peer``.

        Raises ``TransportError`` if ``peer`` is not connected, ``data`` is over
        ``max_control_bytes``, or the write fails (after one retry on a fresh stream, in
        case the neighbour restarted).
        """
        self._check_neighbour(peer)
        await self._control.send(peer, data)

    async def receive(self) -> Envelope:
        """Wait for the next control message; ``TransportError`` once closed."""
        self._check_open()
        return await self._control.receive()

    # ------------------------------------------------------------------ weights
    def offer(self, digest: str, payload: Payload) -> None:
        """Serve ``payload`` to neighbours that fetch ``digest``; keeps ``max_offers``.

        Raises ``TransportError`` once closed or for a payload over ``max_payload_bytes``.
        """
        self._check_open()
        self._weights.offer(digest, payload)

    async def fetch(self, peer: str, digest: str, max_bytes: int) -> Payload:
        """Pull what ``peer`` offers under ``digest``, checking size, deadline and digest.

        Raises ``TransportError`` if ``peer`` is not connected, does not offer ``digest``,
        breaks the protocol, or the whole exchange exceeds ``fetch_timeout``; its subclass
        ``BadPayload`` if ``peer`` offers more than ``max_bytes`` or sends bytes that do
        not hash to ``digest`` (the peer misbehaved: the caller counts it).
        """
        self._check_neighbour(peer)
        return await self._weights.fetch(peer, digest, max_bytes)
