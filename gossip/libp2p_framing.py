"""Byte layouts of medswarm's two libp2p stream protocols, and reading them exactly.

A libp2p stream is a byte pipe: ``read()`` returns whatever has arrived (possibly a few
bytes of a frame), so every message carries an explicit length and is read in a loop.
Nothing here imports libp2p; the stream only needs ``async read(n) -> bytes`` (``b""`` at
the end) and the transport translates the library's own exceptions.

``/medswarm/control/1``: a long-lived stream per direction and neighbour, carrying frames
``u32 length | length bytes``, big-endian, each at most the receiver's control limit.

``/medswarm/weights/1``: one stream per fetch::

    request   u8 digest_len | digest (ASCII hex) | u64 max_bytes
    response  u8 status | u64 length | u8 digest_len | digest | length bytes (status OK only)
    ack       u8 ACK from the fetcher once the bytes hashed to the digest, else NAK

``length`` is the payload size when the status is ``OK`` or ``TOO_LARGE`` (so the error
can name it) and 0 otherwise. Errors: :class:`FrameError` (a ``TransportError``).
"""

from __future__ import annotations

import struct
from typing import Protocol

from gossip.errors import TransportError

CONTROL_HEADER = struct.Struct(">I")
REQUEST_TAIL = struct.Struct(">Q")
RESPONSE_HEAD = struct.Struct(">BQB")
MAX_DIGEST_CHARS = 64  # blake2b-128 hex is 32; leave room for a longer hash later

OK, NOT_FOUND, TOO_LARGE, BAD_REQUEST = 0, 1, 2, 3
STATUS_NAMES = {
    OK: "ok", NOT_FOUND: "not-found", TOO_LARGE: "too-large", BAD_REQUEST: "bad-request",
}
ACK, NAK = b"\x06", b"\x15"


class FrameError(TransportError):
    """A peer sent bytes that do not follow the protocol (or stopped mid-frame)."""


class Readable(Protocol):
    """What :func:`read_exactly` needs from a stream."""

    async def read(self, n: int | None = None) -> bytes: ...


async def read_exactly(stream: Readable, n: int, what: str) -> bytes:
    """Read exactly ``n`` bytes, looping over partial reads.

    Raises
    ------
    FrameError
        If the stream ends first (``what`` names the frame part in the message).
    """
    if n == 0:
        return b""
    parts: list[bytes] = []
    got = 0
    while got < n:
        chunk = await stream.read(min(n - got, 1 << 20))
        if not chunk:
            raise FrameError(f"stream ended after {got} of {n} bytes of {what}")
        parts.append(chunk)
        got += len(chunk)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _check_digest(digest: str) -> bytes:
    raw = digest.encode("ascii", "replace")
    if not 0 < len(raw) <= MAX_DIGEST_CHARS or not raw.isalnum():
        raise FrameError(f"digest must be 1-{MAX_DIGEST_CHARS} alphanumeric characters")
    return raw


def encode_control(data: bytes | bytearray | memoryview) -> bytes:
    """One control frame."""
    return CONTROL_HEADER.pack(len(data)) + bytes(data)


async def read_control(stream: Readable, limit: int) -> bytes | None:
    """The next control frame's payload, or ``None`` at a clean end of stream.

    Raises ``FrameError`` for a frame over ``limit`` or one cut short.
    """
    first = await stream.read(CONTROL_HEADER.size)
    if not first:
        return None
    if len(first) < CONTROL_HEADER.size:
        first += await read_exactly(stream, CONTROL_HEADER.size - len(first), "control header")
    (length,) = CONTROL_HEADER.unpack(first)
    if length > limit:
        raise FrameError(f"control frame of {length} bytes > limit {limit}")
    return await read_exactly(stream, length, "control frame")


def encode_request(digest: str, max_bytes: int) -> bytes:
    """A weights request."""
    raw = _check_digest(digest)
    return bytes([len(raw)]) + raw + REQUEST_TAIL.pack(max_bytes)


async def read_request(stream: Readable) -> tuple[str, int]:
    """``(digest, max_bytes)`` of a weights request."""
    (n,) = await read_exactly(stream, 1, "request")
    if not 0 < n <= MAX_DIGEST_CHARS:
        raise FrameError(f"request digest length {n} out of range")
    raw = await read_exactly(stream, n, "request digest")
    (max_bytes,) = REQUEST_TAIL.unpack(await read_exactly(stream, REQUEST_TAIL.size, "request"))
    if not raw.isalnum():
        raise FrameError("request digest is not alphanumeric")
    return raw.decode("ascii"), max_bytes


def encode_response_head(status: int, length: int, digest: str) -> bytes:
    """The header of a weights response (the payload follows when ``status`` is OK)."""
    raw = _check_digest(digest)
    return RESPONSE_HEAD.pack(status, length, len(raw)) + raw


async def read_response_head(stream: Readable) -> tuple[int, int, str]:
    """``(status, length, digest)`` of a weights response."""
    status, length, n = RESPONSE_HEAD.unpack(
        await read_exactly(stream, RESPONSE_HEAD.size, "response header")
    )
    if status not in STATUS_NAMES:
        raise FrameError(f"unknown response status {status}")
    if not 0 < n <= MAX_DIGEST_CHARS:
        raise FrameError(f"response digest length {n} out of range")
    raw = await read_exactly(stream, n, "response digest")
    return status, length, raw.decode("ascii", "replace")
