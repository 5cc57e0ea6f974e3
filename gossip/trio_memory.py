"""An in-memory network for trio: the async transport contract without sockets.

Real peers run over libp2p; tests of the trio peer driver run over this. Control messages
go through bounded memory channels; a model is fetched by its digest from what the
neighbour currently offers (content addressed, as over libp2p's direct streams).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import trio

from gossip.errors import BadPayload, TransportError
from gossip.transport import Envelope, Payload, check_symmetric


class TrioMemoryNetwork:
    """Links between in-memory trio transports; ``endpoint(peer)`` gives one peer's view."""

    def __init__(self, links: Mapping[str, Sequence[str]], queue: int = 1024) -> None:
        check_symmetric(links)
        self._links = {peer: sorted(neigh) for peer, neigh in links.items()}
        self._channels = {peer: trio.open_memory_channel[Envelope](queue) for peer in links}
        self._offers: dict[str, dict[str, Payload]] = {peer: {} for peer in links}
        self._served: dict[str, int] = {peer: 0 for peer in links}
        self._closed: set[str] = set()

    def endpoint(self, peer: str) -> "TrioMemoryTransport":
        """The transport of ``peer`` (TransportError if unknown)."""
        if peer not in self._links:
            raise TransportError(f"unknown peer {peer}")
        self._closed.discard(peer)
        return TrioMemoryTransport(self, peer)


class TrioMemoryTransport:
    """One peer's async transport (see ``gossip.transport.AsyncTransport``)."""

    def __init__(self, network: TrioMemoryNetwork, peer: str) -> None:
        self._net = network
        self._peer = peer

    @property
    def peer_id(self) -> str:
        """This peer's id."""
        return self._peer

    def neighbours(self) -> list[str]:
        """Sorted neighbour ids."""
        return list(self._net._links[self._peer])

    def _check(self, peer: str | None = None) -> None:
        if self._peer in self._net._closed:
            raise TransportError(f"transport of {self._peer} is closed")
        if peer is not None and peer not in self._net._links[self._peer]:
            raise TransportError(f"{peer} is not a neighbour of {self._peer}")

    async def send(self, peer: str, data: bytes) -> None:
        """Queue a control message for ``peer``; silently lost if that peer is down or full."""
        self._check(peer)
        await trio.lowlevel.checkpoint()
        if peer in self._net._closed:
            return
        try:
            self._net._channels[peer][0].send_nowait(Envelope(self._peer, bytes(data)))
        except trio.WouldBlock:
            pass  # like gossipsub: a full subscriber queue drops

    async def receive(self) -> Envelope:
        """The next control message for this peer (waits)."""
        self._check()
        return await self._net._channels[self._peer][1].receive()

    def offer(self, digest: str, payload: Payload) -> None:
        """Make ``payload`` fetchable by neighbours under ``digest`` (replaces older offers)."""
        offers = self._net._offers[self._peer]
        offers[digest] = payload
        while len(offers) > 8:
            offers.pop(next(iter(offers)))

    async def fetch(self, peer: str, digest: str, max_bytes: int) -> Payload:
        """Pull the payload ``peer`` offers under ``digest``; TransportError if it cannot
        (``BadPayload`` if it is over ``max_bytes``, as over libp2p)."""
        self._check(peer)
        await trio.lowlevel.checkpoint()
        if peer in self._net._closed:
            raise TransportError(f"{peer} is unreachable")
        payload = self._net._offers[peer].get(digest)
        if payload is None:
            raise TransportError(f"{peer} does not offer {digest}")
        if len(payload) > max_bytes:
            raise BadPayload("oversized", f"{peer} offers {len(payload)} bytes > limit {max_bytes}")
        self._net._served[peer] += len(payload)
        return payload

    @property
    def bytes_served(self) -> int:
        """Bytes of this peer's offers that neighbours have fetched."""
        return self._net._served[self._peer]

    @property
    def bad_control(self) -> int:
        """Control input refused by the transport: none here (memory channels have no framing)."""
        return 0

    def close(self) -> None:
        """Leave the network: neighbours can no longer reach this peer."""
        self._net._closed.add(self._peer)
        self._net._offers[self._peer].clear()
