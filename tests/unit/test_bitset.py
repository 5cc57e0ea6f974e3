"""Member bitmaps on the wire (``gossip.bitset``) and the summary that carries them."""

from __future__ import annotations

import zlib

import pytest

from gossip.bitset import MAX_INDEX_BITS, pack_bits, unpack_bits
from gossip.control import Summary, decode_control, encode_control
from gossip.errors import CodecError


@pytest.mark.parametrize("bits", [0, 1, 1 << 999, (1 << 1000) - 1, 1 << (MAX_INDEX_BITS - 1)],
                         ids=["empty", "one", "bit-999", "thousand", "widest"])
def test_unpack_of_pack_is_identity(bits):
    assert unpack_bits(pack_bits(bits)) == bits


def test_a_full_consortium_of_a_thousand_fits_in_a_few_hundred_bytes():
    assert len(pack_bits((1 << 1000) - 1)) < 64
    assert len(pack_bits(int.from_bytes(bytes(range(125)), "little"))) < 200


def test_a_bitmap_wider_than_the_bound_is_refused_both_ways():
    with pytest.raises(CodecError):
        pack_bits(1 << MAX_INDEX_BITS)
    bomb = zlib.compress(bytes(10 * MAX_INDEX_BITS))  # inflates far beyond the bound
    with pytest.raises(CodecError) as err:
        unpack_bits(bomb)
    assert err.value.reason == "bad-field"


def test_garbage_and_truncated_bitmaps_are_refused():
    for data in (b"not zlib", pack_bits(1 << 500)[:-3]):
        with pytest.raises(CodecError):
            unpack_bits(data)


def test_a_summary_goes_over_the_wire_and_a_bad_bitmap_in_it_is_bad_field():
    msg = Summary("peer-1", 7, (pack_bits(0b1011), pack_bits(0b11)), pack_bits(0b1))
    assert decode_control(encode_control(msg)) == msg
    with pytest.raises(CodecError) as err:
        encode_control(Summary("peer-1", 7, (b"junk",), pack_bits(0)))
    assert err.value.reason == "bad-field"
    with pytest.raises(CodecError):
        encode_control(Summary("peer-1", 7, (pack_bits(0),) * 17, pack_bits(0)))  # too many epochs
