"""Weights over ``/medswarm/weights/1``: the offers this peer serves, and fetching others'.

Split out of :mod:`gossip.libp2p_transport`, which checks the peer (open transport,
neighbour, allow-list) before calling in here; this module keeps the offer store and runs
the exchange of :mod:`gossip.libp2p_framing`: one stream per fetch, bounded by
``max_bytes`` and ``fetch_timeout``; the fetcher checks the bytes hash to the digest it
asked for and acknowledges, and only acknowledged bytes count as served.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import trio
from libp2p.abc import IHost, INetStream
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID

from gossip import libp2p_framing as fr
from gossip.codec import digest as payload_digest
from gossip.errors import BadPayload, TransportError
from gossip.libp2p_host import describe_error
from gossip.libp2p_streams import StreamReader, remote_peer, reset_quietly
from gossip.transport import Payload

if TYPE_CHECKING:
    from gossip.libp2p_transport import Libp2pConfig

log = logging.getLogger(__name__)

WEIGHTS_PROTOCOL = TProtocol("/medswarm/weights/1")


class WeightsService:
    """Offers and fetches of the peer ``own`` on ``host``; owned by ``Libp2pTransport``."""

    def __init__(self, host: IHost, own: str, config: Libp2pConfig) -> None:
        self._host = host
        self._own = own
        self._config = config
        self._offers: dict[str, Payload] = {}
        #: payload bytes served to neighbours that acknowledged them (weights sent)
        self.bytes_served = 0

    def offer(self, digest: str, payload: Payload) -> None:
        """Keep ``payload`` under ``digest``, forgetting the oldest beyond ``max_offers``."""
        if len(payload) > self._config.max_payload_bytes:
            raise TransportError(f"payload of {len(payload)} bytes exceeds "
                                 f"{self._config.max_payload_bytes}")
        self._offers.pop(digest, None)
        self._offers[digest] = payload
        while len(self._offers) > self._config.max_offers:
            self._offers.pop(next(iter(self._offers)))

    def get(self, digest: str) -> Payload | None:
        """The payload offered under ``digest``, if it is still kept."""
        return self._offers.get(digest)

    def clear(self) -> None:
        """Forget every offer (the transport is closing)."""
        self._offers.clear()

    async def fetch(self, peer: str, digest: str, max_bytes: int) -> Payload:
        """Pull ``digest`` from ``peer`` (see ``Libp2pTransport.fetch`` for the errors)."""
        if max_bytes < 0:
            raise TransportError(f"max_bytes must be >= 0, got {max_bytes}")
        request = fr.encode_request(digest, min(max_bytes, 2**63))  # u64 on the wire
        stream: INetStream | None = None
        done = False
        try:
            with trio.fail_after(self._config.fetch_timeout):
                stream = await self._host.new_stream(ID.from_base58(peer), [WEIGHTS_PROTOCOL])
                await stream.write(request)
                reader = StreamReader(stream)
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
                                 f"{self._config.fetch_timeout} s") from None
        except Exception as err:
            raise TransportError(f"fetch of {digest} from {peer} failed: "
                                 f"{describe_error(err)}") from err
        finally:
            if not done:
                await reset_quietly(stream)

    async def serve(self, stream: INetStream) -> None:
        """Answer one fetch on an admitted incoming weights stream, within ``serve_timeout``."""
        remote = remote_peer(stream)
        reader = StreamReader(stream)
        try:
            with trio.fail_after(self._config.serve_timeout):
                digest, max_bytes = await fr.read_request(reader)
                payload = self._offers.get(digest)
                if payload is None:
                    await stream.write(fr.encode_response_head(fr.NOT_FOUND, 0, digest))
                elif len(payload) > min(max_bytes, self._config.max_payload_bytes):
                    await stream.write(fr.encode_response_head(fr.TOO_LARGE, len(payload), digest))
                else:
                    await stream.write(fr.encode_response_head(fr.OK, len(payload), digest))
                    view = memoryview(payload).cast("B")
                    step = self._config.chunk_bytes
                    for start in range(0, len(view), step):
                        await stream.write(bytes(view[start:start + step]))
                    ack = await fr.read_exactly(reader, 1, "acknowledgement")
                    if ack == fr.ACK:
                        self.bytes_served += len(view)
                    log.info("event=served peer=%s to=%s digest=%s bytes=%d ack=%s", self._own,
                             remote, digest, len(view), "ok" if ack == fr.ACK else "refused")
                await stream.close()
        except Exception as err:  # noqa: BLE001 - timeout, bad frame, reset: drop this fetch
            log.info("event=serve-failed peer=%s to=%s detail=%s", self._own, remote,
                     describe_error(err))
            await reset_quietly(stream)
