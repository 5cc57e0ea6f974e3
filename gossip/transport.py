"""The transport seam: how a peer's bytes reach its neighbours.

The learning code talks only to this protocol, so the same peer logic runs over the
in-memory network of the simulation and over libp2p. Calls never block: ``send``
queues bytes for delivery, ``drain`` returns what has arrived so far. A driver (a
simulation loop or a trio task) decides when to call them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Protocol, Sequence, Union, runtime_checkable

from gossip.errors import TransportError

#: Anything bytes-like; ``gossip.codec.encode`` returns a read-only memoryview.
Payload = Union[bytes, bytearray, memoryview]


def check_symmetric(links: Mapping[str, Sequence[str]]) -> None:
    """Raise TransportError unless every link can be used both ways (in-memory networks)."""
    for peer, neigh in links.items():
        for other in neigh:
            if peer not in links.get(other, ()):
                raise TransportError(f"links not symmetric: {peer} -> {other} has no way back")


@dataclass(frozen=True)
class Envelope:
    """Bytes that arrived from ``sender`` (the authenticated peer id of the link)."""

    sender: str
    data: Payload


@runtime_checkable
class Transport(Protocol):
    """What a peer needs from the network.

    Errors: every method raises ``gossip.errors.TransportError`` (never a library
    exception) when the transport is closed, the peer is unknown, or the payload
    exceeds the transport's size limit.
    """

    @property
    def peer_id(self) -> str:
        """This peer's own id."""
        ...

    def neighbours(self) -> list[str]:
        """Peer ids this peer can currently send to, sorted."""
        ...

    def send(self, peer: str, data: Payload) -> None:
        """Queue ``data`` for ``peer``; raises TransportError if it is not a neighbour."""
        ...

    def drain(self) -> list[Envelope]:
        """Everything delivered since the last call, in arrival order."""
        ...

    def close(self) -> None:
        """Stop sending and receiving; later calls raise TransportError."""
        ...


@runtime_checkable
class AsyncTransport(Protocol):
    """What a real (trio-driven) peer needs: control gossip plus content-addressed fetches.

    Small control messages go by ``send``/``receive`` (gossip-like: may be lost, never
    corrupted, never forged: ``Envelope.sender`` is the authenticated link peer). Model
    weights are *pulled*: a peer ``offer``s its encoded model under its digest and
    neighbours ``fetch`` it with a size limit. Errors: ``TransportError`` for an unknown
    or unreachable peer, a missing offer, a payload over the limit, or a closed transport.
    """

    @property
    def peer_id(self) -> str:
        """This peer's own id."""
        ...

    def neighbours(self) -> list[str]:
        """Peer ids currently connected, sorted."""
        ...

    async def send(self, peer: str, data: bytes) -> None:
        """Send one control message to ``peer``."""
        ...

    async def receive(self) -> Envelope:
        """Wait for the next control message."""
        ...

    def offer(self, digest: str, payload: Payload) -> None:
        """Serve ``payload`` to neighbours that fetch ``digest``."""
        ...

    async def fetch(self, peer: str, digest: str, max_bytes: int) -> Payload:
        """Pull what ``peer`` offers under ``digest``, at most ``max_bytes``."""
        ...

    @property
    def bytes_served(self) -> int:
        """Bytes of offered payloads delivered to fetching neighbours so far."""
        ...

    def close(self) -> None:
        """Stop serving and receiving."""
        ...
