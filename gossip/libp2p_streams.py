"""A libp2p stream as the medswarm protocol modules see it: read, reset, remote peer.

Shared by :mod:`gossip.libp2p_control_streams` and :mod:`gossip.libp2p_weights` (and by
tests that play a misbehaving peer), so both protocols read to the end and give up on a
stream the same way.
"""

from __future__ import annotations

import trio
from libp2p.abc import INetStream


class StreamReader:
    """A libp2p stream seen as ``read(n)`` returning ``b""`` at its end (see libp2p_framing)."""

    def __init__(self, stream: INetStream) -> None:
        self._stream = stream

    async def read(self, n: int | None = None) -> bytes:
        try:
            return await self._stream.read(n)
        except EOFError:  # libp2p's StreamEOF subclasses it
            return b""


async def reset_quietly(stream: INetStream | None) -> None:
    """Reset ``stream`` (if any) within 1 s, shielded, ignoring any failure."""
    if stream is None:
        return
    with trio.CancelScope(shield=True), trio.move_on_after(1.0):
        try:
            await stream.reset()
        except Exception:  # noqa: BLE001, S110 - the stream or its connection is already gone
            pass


def remote_peer(stream: INetStream) -> str:
    """The authenticated peer id at the other end of ``stream``."""
    return str(stream.muxed_conn.peer_id)
