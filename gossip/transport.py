"""The transport seam: how a peer's bytes reach its neighbours.

The learning code talks only to this protocol, so the same peer logic runs over the
in-memory network of the simulation and over libp2p. Calls never block: ``send``
queues bytes for delivery, ``drain`` returns what has arrived so far. A driver (a
simulation loop or a trio task) decides when to call them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Union, runtime_checkable

#: Anything bytes-like; ``gossip.codec.encode`` returns a read-only memoryview.
Payload = Union[bytes, bytearray, memoryview]


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
