"""``AsyncTransport`` over py-libp2p: Noise-only TCP links between consortium members.

Security (see :mod:`gossip.libp2p_host`). The host speaks TCP, Noise and Yamux only, with
an Ed25519 identity. The consortium check sits *inside* the security step: right after
the Noise handshake, a peer outside the allow-list is dropped before the muxer is
negotiated, so it never gets a stream, not even identify or ping. Every medswarm stream
handler checks the remote peer again.

Control messages go over ``/medswarm/control/1``: one long-lived stream per neighbour and
direction, length-prefixed frames (see :mod:`gossip.libp2p_framing`). Not gossipsub: the
protocol layer only needs "send these bytes to that neighbour", and a direct stream gives
exactly that, with the link's authenticated peer id as sender, in order, with no mesh to
form first and none of gossipsub's silent drops (size, rate, 32-message queue). The one
queue that can drop is ours (``receive_queue``), as in the in-memory transport.

Weights are pulled over ``/medswarm/weights/1``, one stream per fetch, bounded by
``max_bytes`` and ``fetch_timeout``; the fetcher checks the bytes hash to the digest it
asked for and acknowledges.

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
from libp2p.custom_types import TProtocol
from libp2p.network.swarm import Swarm
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr

from gossip import libp2p_framing as fr
from gossip.codec import digest as payload_digest
from gossip.control import MAX_CONTROL_BYTES
from gossip.errors import BadPayload, TransportError
from gossip.libp2p_host import describe_error, new_gated_host, parse_tcp_listen_addr, sole_leaf
from gossip.libp2p_identity import Consortium, NodeKey
from gossip.transport import Envelope, Payload

log = logging.getLogger(__name__)

CONTROL_PROTOCOL = TProtocol("/medswarm/control/1")
WEIGHTS_PROTOCOL = TProtocol("/medswarm/weights/1")


@dataclass(frozen=True)
class Libp2pConfig:
    """Limits and deadlines of a :class:`Libp2pTransport`; checked on construction.

    Raises ``TransportError`` naming the field for a non-positive value.
    """

    max_control_bytes: int = MAX_CONTROL_BYTES  #: largest control message sent or accepted
    max_payload_bytes: int = 1 << 30  #: largest payload offered or served, whatever is asked
    receive_queue: int = 1024  #: control messages buffered for ``receive``; more are dropped
    max_offers: int = 8  #: offers kept; the oldest is forgotten first
    fetch_timeout: float = 120.0  #: whole fetch, request to acknowledgement, in seconds
    serve_timeout: float = 300.0  #: how long a served fetch may take before it is reset
    send_timeout: float = 10.0  #: opening the control stream and writing one frame
    dial_timeout: float = 10.0  #: one ``connect`` call
    dial_retries: int = 1  #: retries per address inside one ``connect`` (libp2p default: 3)
    chunk_bytes: int = 1 << 20  #: payload write size

    def __post_init__(self) -> None:
        for name in ("max_control_bytes", "max_payload_bytes", "receive_queue", "max_offers",
                     "fetch_timeout", "serve_timeout", "send_timeout", "dial_timeout",
                     "chunk_bytes"):
            if not getattr(self, name) > 0:
                raise TransportError(f"config: {name} must be > 0, got {getattr(self, name)!r}")
        if self.dial_retries < 0:
            raise TransportError(f"config: dial_retries must be >= 0, got {self.dial_retries}")


class _Reader:
    """A libp2p stream seen as ``read(n)`` returning ``b""`` at its end (see libp2p_framing)."""

    def __init__(self, stream: INetStream) -> None:
        self._stream = stream

    async def read(self, n: int | None = None) -> bytes:
        try:
            return await self._stream.read(n)
        except EOFError:  # libp2p's StreamEOF subclasses it
            return b""


class _Watcher(INotifee):
    """Wakes ``wait_for_neighbour`` and drops cached control streams on (dis)connection."""

    def __init__(self, transport: Libp2pTransport) -> None:
        self._t = transport

    async def connected(self, network: INetwork, conn: INetConn) -> None:
        self._t._links_changed()

    async def disconnected(self, network: INetwork, conn: INetConn) -> None:
        self._t._forget_stream(str(conn.muxed_conn.peer_id))
        self._t._links_changed()

    async def opened_stream(self, network: INetwork, stream: INetStream) -> None:
        return None

    async def closed_stream(self, network: INetwork, stream: INetStream) -> None:
        return None

    async def listen(self, network: INetwork, multiaddr: Any) -> None:
        return None

    async def listen_close(self, network: INetwork, multiaddr: Any) -> None:
        return None


async def _reset_quietly(stream: INetStream | None) -> None:
    if stream is None:
        return
    with trio.CancelScope(shield=True), trio.move_on_after(1.0):
        try:
            await stream.reset()
        except Exception:  # noqa: BLE001, S110 - the stream or its connection is already gone
            pass


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
        self._recv_in, self._recv_out = trio.open_memory_channel[Envelope](config.receive_queue)
        self._offers: dict[str, Payload] = {}
        self._out: dict[str, INetStream] = {}
        self._send_locks: dict[str, trio.Lock] = {}
        self._changed = trio.Event()
        self._closed = False
        self._shutdown_done: trio.Event | None = None
        #: control messages dropped because ``receive`` was not keeping up
        self.dropped = 0
        #: payload bytes served to neighbours that acknowledged them (weights sent)
        self.bytes_served = 0

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
        self._offers.clear()
        self._recv_out.close()
        self._recv_in.close()
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

    def _remote(self, stream: INetStream) -> str:
        return str(stream.muxed_conn.peer_id)

    def _check_neighbour(self, peer: str) -> None:
        self._check_open()
        if peer not in self.neighbours():
            raise TransportError(f"{peer} is not a neighbour of {self.peer_id}")

    def _admits(self, stream: INetStream, protocol: str) -> bool:
        remote = self._remote(stream)
        if self._closed or not self._allowed(remote):
            log.warning("event=refused-stream peer=%s remote=%s protocol=%s closed=%s",
                        self.peer_id, remote, protocol, self._closed)
            return False
        return True

    # ------------------------------------------------------------------ control
    async def send(self, peer: str, data: bytes) -> None:
        """Send one control message to the connected neighbour ``peer``.

        Raises ``TransportError`` if ``peer`` is not connected, ``data`` is over
        ``max_control_bytes``, or the write fails (after one retry on a fresh stream, in
        case the neighbour restarted).
        """
        self._check_neighbour(peer)
        if len(data) > self.config.max_control_bytes:
            raise TransportError(f"control message of {len(data)} bytes exceeds "
                                 f"{self.config.max_control_bytes}")
        frame = fr.encode_control(data)
        lock = self._send_locks.setdefault(peer, trio.Lock())
        async with lock:
            for attempt in (1, 2):
                stream = self._out.get(peer)
                fresh = stream is None
                written = False
                try:
                    with trio.fail_after(self.config.send_timeout):
                        if stream is None:
                            stream = await self._host.new_stream(ID.from_base58(peer),
                                                                 [CONTROL_PROTOCOL])
                            self._out[peer] = stream
                        await stream.write(frame)
                    written = True
                    return
                except trio.TooSlowError:
                    raise TransportError(f"sending to {peer} timed out") from None
                except Exception as err:
                    if fresh or attempt == 2:
                        raise TransportError(
                            f"cannot send to {peer}: {describe_error(err)}") from err
                    log.info("event=control-stream-stale peer=%s to=%s detail=%s",
                             self.peer_id, peer, describe_error(err))
                finally:
                    if not written and stream is not None:  # a half-written frame would desynchronise it
                        if self._out.get(peer) is stream:
                            self._out.pop(peer, None)
                        await _reset_quietly(stream)

    def _forget_stream(self, peer: str) -> None:
        stream = self._out.pop(peer, None)
        if stream is not None and not self._closed:  # once closed, the host resets them all
            self._nursery.start_soon(_reset_quietly, stream)

    async def receive(self) -> Envelope:
        """Wait for the next control message; ``TransportError`` once closed."""
        self._check_open()
        try:
            return await self._recv_out.receive()
        except (trio.ClosedResourceError, trio.EndOfChannel):
            raise TransportError(f"transport of {self.peer_id} is closed") from None

    async def _serve_control(self, stream: INetStream) -> None:
        if not self._admits(stream, CONTROL_PROTOCOL):
            await _reset_quietly(stream)
            return
        sender = self._remote(stream)
        reader = _Reader(stream)
        try:
            while True:
                data = await fr.read_control(reader, self.config.max_control_bytes)
                if data is None:
                    break
                try:
                    self._recv_in.send_nowait(Envelope(sender, data))
                except trio.WouldBlock:
                    self.dropped += 1
                    log.warning("event=control-dropped peer=%s from=%s reason=queue-full",
                                self.peer_id, sender)
                except (trio.ClosedResourceError, trio.BrokenResourceError):
                    break
            with trio.move_on_after(1.0):
                await stream.close()
        except Exception as err:  # noqa: BLE001 - framing error, reset, closed connection
            log.info("event=control-stream-ended peer=%s from=%s detail=%s",
                     self.peer_id, sender, describe_error(err))
            await _reset_quietly(stream)

    # ------------------------------------------------------------------ weights
    def offer(self, digest: str, payload: Payload) -> None:
        """Serve ``payload`` to neighbours that fetch ``digest``; keeps ``max_offers``.

        Raises ``TransportError`` once closed or for a payload over ``max_payload_bytes``.
        """
        self._check_open()
        if len(payload) > self.config.max_payload_bytes:
            raise TransportError(f"payload of {len(payload)} bytes exceeds "
                                 f"{self.config.max_payload_bytes}")
        self._offers.pop(digest, None)
        self._offers[digest] = payload
        while len(self._offers) > self.config.max_offers:
            self._offers.pop(next(iter(self._offers)))

    async def fetch(self, peer: str, digest: str, max_bytes: int) -> Payload:
        """Pull what ``peer`` offers under ``digest``, checking size, deadline and digest.

        Raises ``TransportError`` if ``peer`` is not connected, does not offer ``digest``,
        breaks the protocol, or the whole exchange exceeds ``fetch_timeout``; its subclass
        ``BadPayload`` if ``peer`` offers more than ``max_bytes`` or sends bytes that do
        not hash to ``digest`` (the peer misbehaved: the caller counts it).
        """
        self._check_neighbour(peer)
        if max_bytes < 0:
            raise TransportError(f"max_bytes must be >= 0, got {max_bytes}")
        request = fr.encode_request(digest, min(max_bytes, 2**63))  # u64 on the wire
        stream: INetStream | None = None
        done = False
        try:
            with trio.fail_after(self.config.fetch_timeout):
                stream = await self._host.new_stream(ID.from_base58(peer), [WEIGHTS_PROTOCOL])
                await stream.write(request)
                reader = _Reader(stream)
                status, length, echoed = await fr.read_response_head(reader)
                if echoed != digest:
                    raise BadPayload("digest-mismatch", f"{peer} answered for {echoed!r}, asked {digest}")
                if status == fr.NOT_FOUND:
                    raise TransportError(f"{peer} does not offer {digest}")
                if status == fr.TOO_LARGE or (status == fr.OK and length > max_bytes):
                    raise BadPayload("oversized", f"{peer} offers {length} bytes > limit {max_bytes}")
                if status != fr.OK:
                    raise fr.FrameError(f"{peer} answered {fr.STATUS_NAMES[status]}")
                data = await fr.read_exactly(reader, length, "payload")
                if payload_digest(data) != digest:
                    await stream.write(fr.NAK)
                    raise BadPayload("digest-mismatch",
                                     f"{peer} sent bytes that do not match digest {digest}")
                await stream.write(fr.ACK)
                await stream.close()
                done = True
                return data
        except TransportError:
            raise
        except trio.TooSlowError:
            raise TransportError(f"fetch of {digest} from {peer} timed out after "
                                 f"{self.config.fetch_timeout} s") from None
        except Exception as err:
            raise TransportError(f"fetch of {digest} from {peer} failed: "
                                 f"{describe_error(err)}") from err
        finally:
            if not done:
                await _reset_quietly(stream)

    async def _serve_weights(self, stream: INetStream) -> None:
        if not self._admits(stream, WEIGHTS_PROTOCOL):
            await _reset_quietly(stream)
            return
        remote = self._remote(stream)
        reader = _Reader(stream)
        try:
            with trio.fail_after(self.config.serve_timeout):
                digest, max_bytes = await fr.read_request(reader)
                payload = self._offers.get(digest)
                if payload is None:
                    await stream.write(fr.encode_response_head(fr.NOT_FOUND, 0, digest))
                elif len(payload) > min(max_bytes, self.config.max_payload_bytes):
                    await stream.write(fr.encode_response_head(fr.TOO_LARGE, len(payload), digest))
                else:
                    await stream.write(fr.encode_response_head(fr.OK, len(payload), digest))
                    view = memoryview(payload).cast("B")
                    step = self.config.chunk_bytes
                    for start in range(0, len(view), step):
                        await stream.write(bytes(view[start:start + step]))
                    ack = await fr.read_exactly(reader, 1, "acknowledgement")
                    if ack == fr.ACK:
                        self.bytes_served += len(view)
                    log.info("event=served peer=%s to=%s digest=%s bytes=%d ack=%s", self.peer_id,
                             remote, digest, len(view), "ok" if ack == fr.ACK else "refused")
                await stream.close()
        except Exception as err:  # noqa: BLE001 - timeout, bad frame, reset: drop this fetch
            log.info("event=serve-failed peer=%s to=%s detail=%s", self.peer_id, remote,
                     describe_error(err))
            await _reset_quietly(stream)
