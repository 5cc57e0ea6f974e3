"""The transport seam: how a peer's bytes reach its neighbours.

The trio peer driver (``peers.runner``) talks only to ``AsyncTransport``, so the same
driver runs over libp2p (``gossip.libp2p_transport``) and over trio memory channels
(``gossip.trio_memory``, for tests); ``tests/contract`` runs one test class against both.
The simulation (``swarm.virtual_swarm``) moves bytes itself on a virtual clock and needs
no transport.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Protocol, Sequence, Union, runtime_checkable

from gossip.errors import TransportError

#: models a peer keeps offering (the newest; a real peer's transport and a simulated peer alike)
MAX_OFFERS = 8

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

    @property
    def bad_control(self) -> int:
        """Control input the transport refused itself (bad frames, excess streams or rate)."""
        ...

    def close(self) -> None:
        """Stop serving and receiving."""
        ...
