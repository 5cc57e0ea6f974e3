"""An in-memory network of transports for simulating many peers in one process.

``MemoryNetwork`` holds the links (an undirected neighbour map) and one mailbox per
peer; ``endpoint(peer)`` returns that peer's ``Transport``. Delivery is immediate and
in order. It counts bytes and messages per sender so reports can show traffic.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Mapping, Sequence

from gossip.errors import TransportError
from gossip.transport import Envelope, Payload, check_symmetric


class MemoryNetwork:
    """Links and mailboxes shared by the in-memory transports of one simulation.

    Parameters
    ----------
    links:
        ``{peer: [neighbour, ...]}``; must be symmetric.
    max_message_bytes:
        Largest payload a transport accepts, like a real transport's limit.
    """

    def __init__(self, links: Mapping[str, Sequence[str]], max_message_bytes: int = 1 << 30) -> None:
        check_symmetric(links)
        self._links = {peer: sorted(neigh) for peer, neigh in links.items()}
        self._mailboxes: dict[str, list[Envelope]] = {peer: [] for peer in links}
        self._closed: set[str] = set()
        self.max_message_bytes = max_message_bytes
        self.bytes_sent: dict[str, int] = defaultdict(int)
        self.messages_sent: dict[str, int] = defaultdict(int)

    def endpoint(self, peer: str) -> "MemoryTransport":
        """The transport of ``peer``; raises TransportError for an unknown peer."""
        if peer not in self._links:
            raise TransportError(f"unknown peer {peer}")
        return MemoryTransport(self, peer)

    def _neighbours(self, peer: str) -> list[str]:
        return list(self._links[peer])

    def _deliver(self, sender: str, peer: str, data: Payload) -> None:
        if sender in self._closed:
            raise TransportError(f"transport of {sender} is closed")
        if peer not in self._links[sender]:
            raise TransportError(f"{peer} is not a neighbour of {sender}")
        if len(data) > self.max_message_bytes:
            raise TransportError(
                f"payload of {len(data)} bytes exceeds the limit of {self.max_message_bytes}"
            )
        self.bytes_sent[sender] += len(data)
        self.messages_sent[sender] += 1
        if peer not in self._closed:
            self._mailboxes[peer].append(Envelope(sender, data))

    def _drain(self, peer: str) -> list[Envelope]:
        if peer in self._closed:
            raise TransportError(f"transport of {peer} is closed")
        box, self._mailboxes[peer] = self._mailboxes[peer], []
        return box

    def _close(self, peer: str) -> None:
        self._closed.add(peer)
        self._mailboxes[peer] = []


class MemoryTransport:
    """One peer's view of a ``MemoryNetwork``; implements ``gossip.transport.Transport``."""

    def __init__(self, network: MemoryNetwork, peer: str) -> None:
        self._network = network
        self._peer = peer

    @property
    def peer_id(self) -> str:
        """This peer's id."""
        return self._peer

    def neighbours(self) -> list[str]:
        """Sorted neighbour ids."""
        return self._network._neighbours(self._peer)

    def send(self, peer: str, data: Payload) -> None:
        """Deliver ``data`` to ``peer``'s mailbox (dropped silently if that peer is closed)."""
        self._network._deliver(self._peer, peer, data)

    def drain(self) -> list[Envelope]:
        """Take everything in this peer's mailbox."""
        return self._network._drain(self._peer)

    def close(self) -> None:
        """Leave the network; later calls raise TransportError."""
        self._network._close(self._peer)
