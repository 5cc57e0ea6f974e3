"""Control messages over ``/medswarm/control/1``: the sending and receiving side.

Split out of :mod:`gossip.libp2p_transport`, which decides *whether* a peer may send or
be sent to (open transport, neighbour, allow-list); this module only moves the bytes.
One long-lived stream per neighbour and direction, length-prefixed frames (see
:mod:`gossip.libp2p_framing`); a stale outgoing stream (the neighbour restarted) is
replaced once. Received messages wait in a bounded queue: when ``receive`` does not keep
up, the newest are dropped and counted (``dropped``), as in the in-memory transport.

Bounds per peer (``Libp2pConfig``): at most ``max_control_streams`` incoming streams open at
once (a further one is reset), an incoming stream silent for ``control_idle_timeout`` is
closed, and messages beyond ``control_rate`` (a token bucket of ``control_burst``) are
dropped. Framing errors, refused streams and dropped messages are counted by reason in
``refused``; the peer counts them as bad control.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import trio
from libp2p.abc import IHost, INetStream
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID

from gossip import libp2p_framing as fr
from gossip.errors import TransportError
from gossip.libp2p_host import describe_error
from gossip.libp2p_streams import StreamReader, remote_peer, reset_quietly
from gossip.rate_limit import TokenBucket
from gossip.transport import Envelope

if TYPE_CHECKING:
    from gossip.libp2p_transport import Libp2pConfig

log = logging.getLogger(__name__)

CONTROL_PROTOCOL = TProtocol("/medswarm/control/1")


class ControlStreams:
    """The control streams of the peer ``own`` on ``host``; owned by ``Libp2pTransport``.

    Callers check the peer first: :meth:`send` assumes ``peer`` is a connected neighbour
    and :meth:`serve` that the stream was admitted.
    """

    def __init__(self, host: IHost, own: str, config: Libp2pConfig,
                 nursery: trio.Nursery) -> None:
        self._host = host
        self._own = own
        self._config = config
        self._nursery = nursery
        self._recv_in, self._recv_out = trio.open_memory_channel[Envelope](config.receive_queue)
        self._out: dict[str, INetStream] = {}
        self._send_locks: dict[str, trio.Lock] = {}
        self._closed = False
        #: control messages dropped because ``receive`` was not keeping up
        self.dropped = 0
        #: control input refused, by reason (see the module docstring)
        self.refused: dict[str, int] = {"bad-frame": 0, "too-many-streams": 0, "rate-limited": 0}
        #: incoming streams closed for being idle longer than ``control_idle_timeout``
        self.idle_closed = 0
        self._open: dict[str, int] = {}  # incoming streams open per peer
        self._rates: dict[str, TokenBucket] = {}  # per allowed peer, so bounded by the consortium

    def close(self) -> None:
        """Stop queueing; a waiting or later :meth:`receive` raises ``TransportError``."""
        self._closed = True
        self._recv_out.close()
        self._recv_in.close()

    async def send(self, peer: str, data: bytes) -> None:
        """Send one control message to ``peer`` (see ``Libp2pTransport.send``)."""
        if len(data) > self._config.max_control_bytes:
            raise TransportError(f"control message of {len(data)} bytes exceeds "
                                 f"{self._config.max_control_bytes}")
        frame = fr.encode_control(data)
        lock = self._send_locks.setdefault(peer, trio.Lock())
        async with lock:
            for attempt in (1, 2):
                stream = self._out.get(peer)
                fresh = stream is None
                written = False
                try:
                    with trio.fail_after(self._config.send_timeout):
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
                             self._own, peer, describe_error(err))
                finally:
                    if not written and stream is not None:  # a half-written frame would desynchronise it
                        if self._out.get(peer) is stream:
                            self._out.pop(peer, None)
                        await reset_quietly(stream)

    def forget(self, peer: str) -> None:
        """Drop the cached stream to ``peer`` (its connection closed)."""
        stream = self._out.pop(peer, None)
        if stream is not None and not self._closed:  # once closed, the host resets them all
            self._nursery.start_soon(reset_quietly, stream)

    async def receive(self) -> Envelope:
        """Wait for the next control message; ``TransportError`` once closed."""
        try:
            return await self._recv_out.receive()
        except (trio.ClosedResourceError, trio.EndOfChannel):
            raise TransportError(f"transport of {self._own} is closed") from None

    async def serve(self, stream: INetStream) -> None:
        """Queue the frames arriving on an admitted incoming control stream until it ends, is
        idle too long or breaks the framing; refuse it beyond ``max_control_streams``."""
        sender = remote_peer(stream)
        if self._open.get(sender, 0) >= self._config.max_control_streams:
            self._refuse(sender, "too-many-streams")
            await reset_quietly(stream)
            return
        self._open[sender] = self._open.get(sender, 0) + 1
        try:
            await self._read_frames(sender, stream)
        finally:
            self._open[sender] -= 1
            if not self._open[sender]:
                del self._open[sender]

    async def _read_frames(self, sender: str, stream: INetStream) -> None:
        reader = StreamReader(stream)
        config = self._config
        rate = self._rates.setdefault(
            sender, TokenBucket(config.control_rate, config.control_burst, trio.current_time()))
        try:
            while True:
                with trio.move_on_after(config.control_idle_timeout) as idle:
                    data = await fr.read_control(reader, config.max_control_bytes)
                if idle.cancelled_caught:
                    self.idle_closed += 1
                    log.info("event=control-stream-idle peer=%s from=%s after=%s", self._own, sender,
                             config.control_idle_timeout)
                    break
                if data is None:
                    break
                if not rate.take(trio.current_time()):
                    self._refuse(sender, "rate-limited")
                    continue
                try:
                    self._recv_in.send_nowait(Envelope(sender, data))
                except trio.WouldBlock:
                    self.dropped += 1
                    log.warning("event=control-dropped peer=%s from=%s reason=queue-full",
                                self._own, sender)
                except (trio.ClosedResourceError, trio.BrokenResourceError):
                    break
            with trio.move_on_after(1.0):
                await stream.close()
        except fr.FrameError as err:
            self._refuse(sender, "bad-frame", str(err))
            await reset_quietly(stream)
        except Exception as err:  # noqa: BLE001 - reset, closed connection
            log.info("event=control-stream-ended peer=%s from=%s detail=%s",
                     self._own, sender, describe_error(err))
            await reset_quietly(stream)

    def _refuse(self, sender: str, reason: str, detail: str = "") -> None:
        """Count refused control input from ``sender`` (logged, rate-limited ones at debug)."""
        self.refused[reason] += 1
        level = logging.DEBUG if reason == "rate-limited" else logging.WARNING
        log.log(level, "event=control-refused peer=%s from=%s reason=%s detail=%s",
                self._own, sender, reason, detail)
