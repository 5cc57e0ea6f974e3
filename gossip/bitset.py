"""Member sets as bitmaps keyed by member index, compact on the wire.

The swarm's aggregates (who was alive in an epoch, whose signed vote says converged) are
sets of members. A set is a Python ``int`` used as a bitmap (bit ``i`` = the member of
index ``i``): union, intersection and counting are single operations whatever the size.
On the wire a bitmap is its little-endian bytes, zlib-compressed (a consortium of 1,000
members costs at most 125 bytes before compression; an open swarm's hashed indices, a
sparse 4,096-bit map, a few dozen bytes). Decoding is bounded: at most
:data:`MAX_INDEX_BITS` bits come out of any input (no zlib bomb).
"""

from __future__ import annotations

import functools
import zlib

from gossip.errors import CodecError

#: most member indices a bitmap can hold (the largest consortium a swarm may have)
MAX_INDEX_BITS = 1 << 15
#: longest compressed bitmap accepted on the wire, in bytes
MAX_BITMAP_WIRE = MAX_INDEX_BITS // 8 + 64


def pack_bits(bits: int) -> bytes:
    """``bits`` (a non-negative int below ``2**MAX_INDEX_BITS``) as wire bytes.

    Raises
    ------
    CodecError
        ``bad-field`` for a negative or too wide bitmap.
    """
    if bits < 0 or bits.bit_length() > MAX_INDEX_BITS:
        raise CodecError("bad-field", f"bitmap of {bits.bit_length()} bits > {MAX_INDEX_BITS}")
    raw = bits.to_bytes((bits.bit_length() + 7) // 8, "little")
    return zlib.compress(raw, 6)


def unpack_bits(data: bytes) -> int:
    """The bitmap in wire ``data``; the inverse of :func:`pack_bits` (see :func:`_unpack`)."""
    return _unpack(bytes(data))


@functools.lru_cache(maxsize=1024)
def _unpack(data: bytes) -> int:
    """Inflate one bitmap. Cached: a summary goes to every neighbour alike, and the sender
    checks it on encode, so the same bytes are inflated many times.

    Raises
    ------
    CodecError
        ``bad-field`` if ``data`` is too long, not zlib, or inflates beyond
        :data:`MAX_INDEX_BITS` bits.
    """
    if len(data) > MAX_BITMAP_WIRE:
        raise CodecError("bad-field", f"bitmap is {len(data)} bytes > {MAX_BITMAP_WIRE}")
    inflate = zlib.decompressobj()
    try:
        raw = inflate.decompress(data, MAX_INDEX_BITS // 8 + 1)
    except zlib.error as exc:
        raise CodecError("bad-field", f"bitmap is not zlib: {exc}") from None
    if len(raw) > MAX_INDEX_BITS // 8 or inflate.unconsumed_tail or not inflate.eof:
        raise CodecError("bad-field", "bitmap inflates beyond its bound or is truncated")
    return int.from_bytes(raw, "little")
