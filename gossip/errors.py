"""Exception hierarchy shared by every medswarm package.

``MedswarmError`` is the single root; each package hangs its own subtree from it
(``GossipError`` here, ``SwarmError`` in ``swarm.errors``, ``PeerError`` in ``peers``),
so the command line can turn any of them into a one-line message.
"""

from __future__ import annotations


class MedswarmError(Exception):
    """Root of every error medswarm raises on purpose."""


class GossipError(MedswarmError):
    """Something went wrong on the wire: encoding, decoding, validation or transport."""


class CodecError(GossipError):
    """A weights message could not be encoded or decoded.

    Attributes
    ----------
    reason:
        Short machine-friendly reason, e.g. ``"truncated"``, ``"bad-version"``,
        ``"bad-checksum"``, ``"shape-mismatch"``, ``"oversized"``, ``"not-msgpack"``.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


class RejectedMessage(GossipError):
    """A decoded message was refused by validation (wrong model, round, shapes, values).

    Attributes
    ----------
    peer_id:
        The sender the message claimed to come from (or the link it arrived on).
    reason:
        Short reason, e.g. ``"model-mismatch"``, ``"non-finite"``.
    """

    def __init__(self, peer_id: str, reason: str, detail: str = "") -> None:
        self.peer_id = peer_id
        self.reason = reason
        self.detail = detail
        msg = f"message from {peer_id} rejected: {reason}"
        super().__init__(f"{msg} ({detail})" if detail else msg)


class TransportError(GossipError):
    """A transport could not deliver or receive bytes (unknown peer, closed, too large)."""


class BadPayload(TransportError):
    """A neighbour's transfer broke what was asked of it: a hostile or broken sender.

    Raised by ``fetch`` when the peer offers or starts sending more bytes than allowed
    (``reason="oversized"``) or sends bytes that do not hash to the digest asked for, or
    answers for another digest (``reason="digest-mismatch"``). Unlike a plain
    ``TransportError`` (timeout, lost link) it says the peer misbehaved, so the receiver
    counts it as a rejected transfer.
    """

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        super().__init__(detail)
