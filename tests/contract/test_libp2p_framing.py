"""The libp2p stream framings, read through a stream that returns a few bytes at a time.

py-libp2p's ``stream.read(n)`` may return fewer than ``n`` bytes; these tests feed every
frame one or three bytes per read to check nothing assumes otherwise.
"""

from __future__ import annotations

import pytest

from gossip import libp2p_framing as fr
from gossip.codec import digest


class Dribble:
    """A stream over ``data`` whose reads return at most ``step`` bytes, then ``b""``."""

    def __init__(self, data: bytes, step: int) -> None:
        self.data, self.step, self.pos = data, step, 0

    async def read(self, n: int | None = None) -> bytes:
        take = self.step if n is None else min(n, self.step)
        chunk = self.data[self.pos:self.pos + take]
        self.pos += len(chunk)
        return chunk


@pytest.mark.parametrize("step", [1, 3, 1 << 20])
async def test_control_frames_round_trip_across_partial_reads(step):
    messages = [b"", b"a", bytes(range(256)) * 10]
    stream = Dribble(b"".join(fr.encode_control(m) for m in messages), step)
    got = [await fr.read_control(stream, 1 << 16) for _ in messages]
    assert got == messages
    assert await fr.read_control(stream, 1 << 16) is None  # clean end


async def test_a_control_frame_over_the_limit_is_refused_before_its_body_is_read():
    stream = Dribble(fr.encode_control(bytes(100)), 1)
    with pytest.raises(fr.FrameError, match="> limit 99"):
        await fr.read_control(stream, 99)
    assert stream.pos == fr.CONTROL_HEADER.size


async def test_a_control_frame_cut_short_raises():
    with pytest.raises(fr.FrameError, match="stream ended after 2 of 5 bytes"):
        await fr.read_control(Dribble(fr.encode_control(b"hello")[:-3], 1), 100)


@pytest.mark.parametrize("step", [1, 3])
async def test_request_and_response_header_round_trip(step):
    key = digest(b"weights")
    assert await fr.read_request(Dribble(fr.encode_request(key, 12345), step)) == (key, 12345)
    head = fr.encode_response_head(fr.TOO_LARGE, 1 << 40, key)
    assert await fr.read_response_head(Dribble(head, step)) == (fr.TOO_LARGE, 1 << 40, key)


@pytest.mark.parametrize("bad", ["", "x" * 65, "../etc", "ab cd"])
def test_a_malformed_digest_is_refused_when_encoding(bad):
    with pytest.raises(fr.FrameError, match="digest"):
        fr.encode_request(bad, 1)


async def test_an_unknown_response_status_is_refused():
    head = fr.RESPONSE_HEAD.pack(9, 0, 1) + b"a"
    with pytest.raises(fr.FrameError, match="status 9"):
        await fr.read_response_head(Dribble(head, 2))
