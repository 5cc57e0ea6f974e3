"""Tests for gossip control messages: round trips, every invalid case, size caps, fuzzing."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gossip import control
from gossip.codec import digest
from gossip.control import (
    CONTROL_VERSION,
    DIGEST_HEX_CHARS,
    MAX_ADDR_CHARS,
    MAX_CONTROL_BYTES,
    MAX_ID_CHARS,
    MAX_PEER_RECORDS,
    MAX_REASON_CHARS,
    MAX_RECORD_ADDRS,
    MAX_TTL,
    REASONS,
    Announce,
    ControlMessage,
    PeerExchange,
    PeerRecord,
    Progress,
    Skip,
    StopDecision,
    decode_control,
    encode_control,
    forwarded,
)
from gossip.errors import CodecError

FUZZ = settings(max_examples=150, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])
ROUND_TRIP = settings(max_examples=100, deadline=None, derandomize=True)

_MAX_INT = 2**63 - 1
TAGS = {Announce: "announce", Skip: "skip", Progress: "progress", StopDecision: "stop",
        PeerExchange: "peers"}

ANNOUNCE = Announce("hospital-a", 3, 1, digest(b"weights"), 1024, 120, 4)
SKIP = Skip("hospital-b", 3, 1)
PROGRESS = Progress("hospital-c", 7, 3, 0.25, 0.9, 0.01, False, 0, 8)
STOP = StopDecision("hospital-d", 2, 10, "converged", 8)
PEERS = PeerExchange("hospital-e", (
    PeerRecord("hospital-e", ("/ip4/10.0.0.5/tcp/4001/p2p/hospital-e",)),
    PeerRecord("hospital-f", ("/ip4/10.0.0.6/tcp/4001", "/dns4/f.example/tcp/4001")),
))
EXAMPLES: list[ControlMessage] = [ANNOUNCE, SKIP, PROGRESS, STOP, PEERS]


def _wire(msg: ControlMessage) -> dict[str, Any]:
    return msgpack.unpackb(encode_control(msg), raw=False)  # type: ignore[no-any-return]


def _pack(obj: Any) -> bytes:
    return msgpack.packb(obj)  # type: ignore[no-any-return]


def _decode_reason(data: bytes | bytearray | memoryview) -> str:
    with pytest.raises(CodecError) as info:
        decode_control(data)
    return info.value.reason


def _encode_reason(msg: Any) -> str:
    with pytest.raises(CodecError) as info:
        encode_control(msg)
    return info.value.reason


# --- strategies ----------------------------------------------------------------------------

# Printable text: no control, format, surrogate, private-use or unassigned characters, and no
# separators other than the plain space (exactly what str.isprintable() accepts).
_printable = st.characters(exclude_categories=("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"),
                           exclude_characters="\u00a0\u1680\u2000\u2001\u2002\u2003\u2004"
                                              "\u2005\u2006\u2007\u2008\u2009\u200a\u202f"
                                              "\u205f\u3000")
peer_ids = st.text(_printable, min_size=1, max_size=MAX_ID_CHARS)
reasons = st.text(_printable, max_size=MAX_REASON_CHARS)
counts = st.integers(0, _MAX_INT)
ttls = st.integers(0, MAX_TTL)
digests = st.text("0123456789abcdef", min_size=DIGEST_HEX_CHARS, max_size=DIGEST_HEX_CHARS)
finite = st.none() | st.floats(allow_nan=False, allow_infinity=False)
non_negative = st.none() | st.floats(min_value=0.0, allow_nan=False, allow_infinity=False)

announces = st.builds(Announce, peer_ids, counts, counts, digests, counts,
                      st.integers(1, _MAX_INT), counts)
skips = st.builds(Skip, peer_ids, counts, counts)
progresses = st.builds(Progress, peer_ids, counts, counts, finite, finite, non_negative,
                       st.booleans(), counts, ttls)
stops = st.builds(StopDecision, peer_ids, counts, counts, reasons, ttls)
addresses = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E),
                    max_size=MAX_ADDR_CHARS - 1).map(lambda t: "/" + t)
records = st.lists(
    st.tuples(peer_ids, st.lists(addresses, min_size=1, max_size=MAX_RECORD_ADDRS, unique=True)),
    max_size=MAX_PEER_RECORDS, unique_by=lambda r: r[0],
).map(lambda rs: tuple(PeerRecord(p, tuple(a)) for p, a in rs))
exchanges = st.builds(PeerExchange, peer_ids, records)
messages = st.one_of(announces, skips, progresses, stops, exchanges)


# --- round trips and wire format ----------------------------------------------------------

@given(messages)
@ROUND_TRIP
def test_decode_of_encode_is_identity(msg: ControlMessage) -> None:
    data = encode_control(msg)

    decoded = decode_control(data)

    assert decoded == msg
    assert type(decoded) is type(msg)
    assert len(data) <= MAX_CONTROL_BYTES


@given(messages)
@ROUND_TRIP
def test_encoding_is_deterministic_and_canonical(msg: ControlMessage) -> None:
    data = encode_control(msg)

    assert encode_control(decode_control(data)) == data


@pytest.mark.parametrize("msg", EXAMPLES, ids=lambda m: type(m).__name__)
def test_wire_map_holds_version_type_and_exactly_the_dataclass_fields(
        msg: ControlMessage) -> None:
    wire = _wire(msg)

    names = [f.name for f in dataclasses.fields(msg)]
    assert list(wire) == ["v", "t", *names]
    assert wire["v"] == CONTROL_VERSION
    assert wire["t"] == TAGS[type(msg)]
    as_lists = msgpack.unpackb(msgpack.packb(dataclasses.asdict(msg)), raw=False)
    if "digest" in as_lists:  # the one field sent in another form: its 16 bytes, not hex
        as_lists["digest"] = bytes.fromhex(as_lists["digest"])
        assert len(wire["digest"]) == DIGEST_HEX_CHARS // 2
    assert {name: wire[name] for name in names} == as_lists


def test_every_message_type_has_a_distinct_wire_tag() -> None:
    assert len(set(TAGS.values())) == len(TAGS)
    for msg in EXAMPLES:
        assert _wire(msg)["t"] == TAGS[type(msg)]


@pytest.mark.parametrize("as_type", [bytes, bytearray, memoryview])
def test_decode_accepts_any_bytes_like(as_type: type) -> None:
    data = as_type(encode_control(PROGRESS))

    assert decode_control(data) == PROGRESS


def test_decode_accepts_a_non_contiguous_memoryview() -> None:
    data = encode_control(STOP)
    spread = bytearray(2 * len(data))
    spread[::2] = data

    assert decode_control(memoryview(spread)[::2]) == STOP


def test_ints_in_float_fields_are_accepted_and_become_floats() -> None:
    msg = dataclasses.replace(PROGRESS, loss=2, metric=-1, distance=0)

    decoded = decode_control(encode_control(msg))
    wire = _wire(msg)
    wire.update(loss=3, metric=0, distance=5)
    from_ints = decode_control(_pack(wire))

    assert isinstance(decoded, Progress) and isinstance(from_ints, Progress)
    assert (decoded.loss, decoded.metric, decoded.distance) == (2.0, -1.0, 0.0)
    assert all(type(x) is float for x in (decoded.loss, decoded.metric, decoded.distance))
    assert (from_ints.loss, from_ints.metric, from_ints.distance) == (3.0, 0.0, 5.0)
    assert all(type(x) is float for x in (from_ints.loss, from_ints.metric, from_ints.distance))


def test_single_precision_floats_on_the_wire_are_accepted() -> None:
    packer = msgpack.Packer(use_single_float=True)

    decoded = decode_control(packer.pack(_wire(PROGRESS)))

    assert isinstance(decoded, Progress)
    assert decoded.loss == 0.25 and decoded.distance == pytest.approx(0.01)


def test_announce_carries_a_real_codec_digest() -> None:
    assert len(digest(b"anything")) == DIGEST_HEX_CHARS
    assert decode_control(encode_control(ANNOUNCE)) == ANNOUNCE


def test_largest_valid_messages_stay_far_below_the_cap() -> None:
    widest = "\U0001f600"  # printable, four bytes in UTF-8
    progress = Progress(widest * MAX_ID_CHARS, _MAX_INT, _MAX_INT, -1e308, 1e308, 1e308,
                        True, _MAX_INT, MAX_TTL)
    stop = StopDecision(widest * MAX_ID_CHARS, _MAX_INT, _MAX_INT,
                        widest * MAX_REASON_CHARS, MAX_TTL)

    sizes = [len(encode_control(m)) for m in (progress, stop)]

    assert max(sizes) < 4 * 1024 < MAX_CONTROL_BYTES


def test_the_largest_peer_exchange_fits_under_the_cap() -> None:
    widest = "\U0001f600"
    recs = tuple(PeerRecord(f"{i:02d}" + widest * (MAX_ID_CHARS - 2),
                            tuple(f"/{i:02d}{j}" + "~" * (MAX_ADDR_CHARS - 4)
                                  for j in range(MAX_RECORD_ADDRS)))
                 for i in range(MAX_PEER_RECORDS))
    msg = PeerExchange(widest * MAX_ID_CHARS, recs)

    data = encode_control(msg)

    assert len(data) < MAX_CONTROL_BYTES
    assert decode_control(data) == msg


def test_a_peer_exchange_may_be_empty_and_records_keep_their_order() -> None:
    empty = PeerExchange("p", ())
    flipped = PeerExchange(PEERS.sender, PEERS.peers[::-1])

    assert decode_control(encode_control(empty)) == empty
    assert decode_control(encode_control(flipped)).peers == flipped.peers  # type: ignore[union-attr]


def test_decoded_peer_records_are_named_tuples_of_tuples() -> None:
    decoded = decode_control(encode_control(PEERS))

    assert isinstance(decoded, PeerExchange)
    assert all(type(r) is PeerRecord and type(r.addrs) is tuple for r in decoded.peers)
    assert decoded.peers[1].addrs == ("/ip4/10.0.0.6/tcp/4001", "/dns4/f.example/tcp/4001")


# --- invalid fields: the same rule on encode and on decode --------------------------------

# (message, field, bad value); each must give "bad-field" on both sides.
INVALID_FIELDS: list[tuple[ControlMessage, str, Any]] = [
    (ANNOUNCE, "sender", ""),
    (ANNOUNCE, "sender", "x" * (MAX_ID_CHARS + 1)),
    (ANNOUNCE, "sender", "bad\nid"),
    (ANNOUNCE, "sender", "tab\tid"),
    (ANNOUNCE, "sender", b"hospital-a"),
    (ANNOUNCE, "sender", 7),
    (ANNOUNCE, "sender", None),
    (ANNOUNCE, "round", -1),
    (ANNOUNCE, "round", True),
    (ANNOUNCE, "round", 1.0),
    (ANNOUNCE, "round", "1"),
    (ANNOUNCE, "round", 2**63),
    (ANNOUNCE, "step", -5),
    (ANNOUNCE, "step", None),
    (ANNOUNCE, "digest", "ab" * 15),
    (ANNOUNCE, "digest", "ab" * 17),
    (ANNOUNCE, "digest", "AB" * 16),
    (ANNOUNCE, "digest", "g" * 32),
    (ANNOUNCE, "digest", "ab" * 15 + "a\n"),
    (ANNOUNCE, "digest", bytes(16)),
    (ANNOUNCE, "size", -1),
    (ANNOUNCE, "samples", 0),
    (ANNOUNCE, "samples", False),
    (ANNOUNCE, "degree", -1),
    (ANNOUNCE, "degree", [4]),
    (SKIP, "sender", ""),
    (SKIP, "round", -1),
    (SKIP, "step", False),
    (PROGRESS, "origin", ""),
    (PROGRESS, "origin", "\x00"),
    (PROGRESS, "seq", -1),
    (PROGRESS, "round", 0.5),
    (PROGRESS, "loss", math.nan),
    (PROGRESS, "loss", math.inf),
    (PROGRESS, "loss", -math.inf),
    (PROGRESS, "loss", True),
    (PROGRESS, "loss", "0.5"),
    (PROGRESS, "metric", math.nan),
    (PROGRESS, "metric", [0.5]),
    (PROGRESS, "distance", -0.5),
    (PROGRESS, "distance", -1),
    (PROGRESS, "distance", math.inf),
    (PROGRESS, "converged", 1),
    (PROGRESS, "converged", None),
    (PROGRESS, "converged", "yes"),
    (PROGRESS, "streak", -1),
    (PROGRESS, "ttl", -1),
    (PROGRESS, "ttl", MAX_TTL + 1),
    (PROGRESS, "ttl", True),
    (STOP, "origin", "x" * (MAX_ID_CHARS + 1)),
    (STOP, "seq", 1.5),
    (STOP, "stop_round", -1),
    (STOP, "reason", "r" * (MAX_REASON_CHARS + 1)),
    (STOP, "reason", "two\nlines"),
    (STOP, "reason", None),
    (STOP, "ttl", 65),
    (PEERS, "sender", ""),
    (PEERS, "sender", "a\nb"),
    (PEERS, "peers", None),
    (PEERS, "peers", "hospital-e"),
    (PEERS, "peers", {"hospital-e": ["/ip4/1.2.3.4/tcp/1"]}),
    (PEERS, "peers", [["p", ["/a"]]] * 2),  # a repeated peer id
    (PEERS, "peers", [[f"p{i}", ["/a"]] for i in range(MAX_PEER_RECORDS + 1)]),
    (PEERS, "peers", [["p"]]),
    (PEERS, "peers", [["p", ["/a"], 1]]),
    (PEERS, "peers", ["p"]),
    (PEERS, "peers", [[None, ["/a"]]]),
    (PEERS, "peers", [["", ["/a"]]]),
    (PEERS, "peers", [["x" * (MAX_ID_CHARS + 1), ["/a"]]]),
    (PEERS, "peers", [["p\x00", ["/a"]]]),
    (PEERS, "peers", [["p", []]]),
    (PEERS, "peers", [["p", "/ip4/1.2.3.4/tcp/1"]]),  # a bare string is not an array
    (PEERS, "peers", [["p", None]]),
    (PEERS, "peers", [["p", [f"/{i}" for i in range(MAX_RECORD_ADDRS + 1)]]]),
    (PEERS, "peers", [["p", ["/a", "/a"]]]),
    (PEERS, "peers", [["p", [""]]]),
    (PEERS, "peers", [["p", ["ip4/1.2.3.4/tcp/1"]]]),
    (PEERS, "peers", [["p", ["/" + "a" * MAX_ADDR_CHARS]]]),
    (PEERS, "peers", [["p", ["/ip4/1.2.3.4 /tcp/1"]]]),
    (PEERS, "peers", [["p", ["/ip4/1.2.3.4/tcp/1\n"]]]),
    (PEERS, "peers", [["p", ["/dns4/h\u00f4pital/tcp/1"]]]),
    (PEERS, "peers", [["p", [b"/ip4/1.2.3.4/tcp/1"]]]),
    (PEERS, "peers", [["p", [7]]]),
]


def _case_id(case: tuple[ControlMessage, str, Any]) -> str:
    msg, field, value = case
    return f"{type(msg).__name__}.{field}={value!r:.20}"


@pytest.mark.parametrize("case", INVALID_FIELDS, ids=_case_id)
def test_invalid_field_is_rejected_by_encode(case: tuple[ControlMessage, str, Any]) -> None:
    msg, field, value = case

    assert _encode_reason(dataclasses.replace(msg, **{field: value})) == "bad-field"


#: a digest travels as its 16 bytes: on the wire, hex (even valid hex) and other lengths are bad
WIRE_DIGEST_CASES: list[tuple[ControlMessage, str, Any]] = [
    (ANNOUNCE, "digest", value) for value in ("ab" * 16, bytes(15), bytes(17), b"", None, 7)]
INVALID_ON_THE_WIRE = [c for c in INVALID_FIELDS if c[1] != "digest" or isinstance(c[2], str)] + WIRE_DIGEST_CASES


@pytest.mark.parametrize("case", INVALID_ON_THE_WIRE, ids=_case_id)
def test_invalid_field_is_rejected_by_decode(case: tuple[ControlMessage, str, Any]) -> None:
    msg, field, value = case
    wire = _wire(msg)
    wire[field] = value

    assert _decode_reason(_pack(wire)) == "bad-field"


@pytest.mark.parametrize("value", ["\ud800", "ok\udfff"])
def test_encode_rejects_lone_surrogates_that_utf8_cannot_carry(value: str) -> None:
    assert _encode_reason(dataclasses.replace(SKIP, sender=value)) == "bad-field"
    assert _encode_reason(dataclasses.replace(STOP, reason=value)) == "bad-field"


def test_encode_rejects_ints_beyond_float_range_in_float_fields() -> None:
    assert _encode_reason(dataclasses.replace(PROGRESS, loss=10**400)) == "bad-field"


@pytest.mark.parametrize("msg", EXAMPLES, ids=lambda m: type(m).__name__)
def test_boundary_values_are_accepted(msg: ControlMessage) -> None:
    changes: dict[str, Any] = {}
    for f in dataclasses.fields(msg):
        if f.name in {"sender", "origin"}:
            changes[f.name] = "p"
        elif f.name == "ttl":
            changes[f.name] = MAX_TTL
        elif f.name == "samples":
            changes[f.name] = 1
        elif f.name == "reason":
            changes[f.name] = ""
        elif f.name in {"loss", "metric", "distance"}:
            changes[f.name] = None
        elif f.name == "peers":
            changes[f.name] = (PeerRecord("p", ("/", "/" + "~" * (MAX_ADDR_CHARS - 1))),)
        elif f.type == "int":
            changes[f.name] = 0
    edge = dataclasses.replace(msg, **changes)

    assert decode_control(encode_control(edge)) == edge


def test_encode_rejects_objects_that_are_not_control_messages() -> None:
    @dataclasses.dataclass(frozen=True)
    class Announce2(Announce):
        pass

    sub = Announce2(*dataclasses.astuple(ANNOUNCE))

    assert _encode_reason(sub) == "bad-type"
    assert _encode_reason({"t": "skip"}) == "bad-type"
    assert _encode_reason(None) == "bad-type"


# --- invalid envelopes -------------------------------------------------------------------

@pytest.mark.parametrize("version", [0, 1, 3, -1, 2**64 - 1])
def test_other_version_is_bad_version(version: int) -> None:
    wire = _wire(SKIP)
    wire["v"] = version

    assert _decode_reason(_pack(wire)) == "bad-version"


def test_version_is_checked_before_type_and_fields() -> None:
    newer = {"v": CONTROL_VERSION + 1, "t": "hello", "anything": [1, 2]}

    assert _decode_reason(_pack(newer)) == "bad-version"


@pytest.mark.parametrize("version", [True, 1.0, "1", None, [1]])
def test_ill_typed_version_is_bad_field(version: Any) -> None:
    wire = _wire(SKIP)
    wire["v"] = version

    assert _decode_reason(_pack(wire)) == "bad-field"


def test_missing_version_is_bad_field() -> None:
    wire = _wire(SKIP)
    del wire["v"]

    assert _decode_reason(_pack(wire)) == "bad-field"


@pytest.mark.parametrize("tag", ["ping", "", "Announce", "STOP", "announce "])
def test_unknown_type_is_bad_type(tag: str) -> None:
    wire = _wire(SKIP)
    wire["t"] = tag

    assert _decode_reason(_pack(wire)) == "bad-type"


@pytest.mark.parametrize("tag", [None, 1, b"skip", ["skip"]])
def test_ill_typed_or_missing_type_is_bad_field(tag: Any) -> None:
    wire = _wire(SKIP)
    if tag is None:
        del wire["t"]
    else:
        wire["t"] = tag

    assert _decode_reason(_pack(wire)) == "bad-field"


@pytest.mark.parametrize("msg", EXAMPLES, ids=lambda m: type(m).__name__)
def test_each_missing_field_is_bad_field(msg: ControlMessage) -> None:
    for f in dataclasses.fields(msg):
        wire = _wire(msg)
        del wire[f.name]

        assert _decode_reason(_pack(wire)) == "bad-field", f.name


@pytest.mark.parametrize("extra", ["extra", "ttl", b"sender", ""])
def test_extra_field_is_bad_field(extra: str | bytes) -> None:
    wire: dict[Any, Any] = _wire(SKIP)  # a Skip has no ttl
    wire[extra] = 1

    assert _decode_reason(_pack(wire)) == "bad-field"


def test_another_types_fields_are_bad_field() -> None:
    wire = _wire(PROGRESS)
    wire["t"] = "stop"

    assert _decode_reason(_pack(wire)) == "bad-field"


def test_duplicate_key_is_bad_field() -> None:
    wire = _wire(SKIP)
    packer = msgpack.Packer()
    data = packer.pack_map_header(len(wire) + 1)
    for key, value in [*wire.items(), ("round", 99)]:
        data += packer.pack(key) + packer.pack(value)

    assert _decode_reason(data) == "bad-field"


@pytest.mark.parametrize("obj", [[1, "skip"], 1, "skip", None, True, 1.5, b"\x01",
                                 list(_wire(SKIP).items())])
def test_msgpack_that_is_not_a_map_is_bad_field(obj: Any) -> None:
    assert _decode_reason(_pack(obj)) == "bad-field"


@pytest.mark.parametrize("data", [
    b"",
    b"\xc1",  # never used in msgpack
    b"\x82\xa1v",  # truncated map
    b"\x81\x01\x01",  # int map key
    b"\x81\xa1v\xa2\xff\xfe",  # invalid UTF-8 string
    b"\x91" * 5000 + b"\x90",  # nested deeper than msgpack's stack
], ids=["empty", "reserved-byte", "truncated", "int-key", "bad-utf8", "too-deep"])
def test_not_msgpack(data: bytes) -> None:
    assert _decode_reason(data) == "not-msgpack"


@pytest.mark.parametrize("msg", EXAMPLES, ids=lambda m: type(m).__name__)
def test_every_strict_prefix_of_a_valid_message_is_not_msgpack(msg: ControlMessage) -> None:
    data = encode_control(msg)

    for end in range(len(data)):
        assert _decode_reason(data[:end]) == "not-msgpack"


@pytest.mark.parametrize("tail", [b"\x00", b"\xc1", b"garbage", None])
def test_trailing_bytes(tail: bytes | None) -> None:
    data = encode_control(SKIP)
    tail = data if tail is None else tail  # two valid messages back to back

    assert _decode_reason(data + tail) == "trailing-bytes"


# --- size caps -----------------------------------------------------------------------------

def test_decode_rejects_input_over_the_cap_before_parsing() -> None:
    assert _decode_reason(b"\xc1" * (MAX_CONTROL_BYTES + 1)) == "oversized"
    assert _decode_reason(bytearray(MAX_CONTROL_BYTES + 1)) == "oversized"


def test_decode_rejects_a_well_formed_message_over_the_cap() -> None:
    wire = _wire(STOP)
    wire["reason"] = "r" * MAX_CONTROL_BYTES

    assert _decode_reason(_pack(wire)) == "oversized"


def test_decode_cap_is_inclusive() -> None:
    wire: dict[str, Any] = _wire(SKIP)
    wire["pad"] = ""
    wire["pad"] = "p" * (MAX_CONTROL_BYTES - len(_pack(wire)) - 2)  # str16 header grows by 2
    data = _pack(wire)

    assert len(data) == MAX_CONTROL_BYTES
    assert _decode_reason(data) == "bad-field"  # parsed, then refused for the extra field
    assert _decode_reason(data + b"\x00") == "oversized"


def test_encode_enforces_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    size = len(encode_control(STOP))
    monkeypatch.setattr(control, "MAX_CONTROL_BYTES", size - 1)

    assert _encode_reason(STOP) == "oversized"
    monkeypatch.setattr(control, "MAX_CONTROL_BYTES", size)
    assert len(encode_control(STOP)) == size


def test_reasons_are_the_documented_ones() -> None:
    assert REASONS == {"oversized", "not-msgpack", "bad-version", "bad-type", "bad-field",
                       "trailing-bytes"}


# --- forwarded -----------------------------------------------------------------------------

@pytest.mark.parametrize("msg", [PROGRESS, STOP], ids=lambda m: type(m).__name__)
def test_forwarded_decrements_ttl_and_keeps_everything_else(
        msg: Progress | StopDecision) -> None:
    nxt = forwarded(msg)

    assert nxt is not None and type(nxt) is type(msg)
    assert nxt.ttl == msg.ttl - 1
    assert dataclasses.replace(nxt, ttl=msg.ttl) == msg
    assert msg.ttl == 8  # the original is untouched


@pytest.mark.parametrize("msg", [PROGRESS, STOP], ids=lambda m: type(m).__name__)
def test_forwarded_is_none_at_ttl_zero(msg: Progress | StopDecision) -> None:
    assert forwarded(dataclasses.replace(msg, ttl=0)) is None


def test_a_max_ttl_message_travels_exactly_max_ttl_more_hops() -> None:
    msg: Progress | StopDecision | None = dataclasses.replace(PROGRESS, ttl=MAX_TTL)
    hops = 0
    while (msg := forwarded(msg)) is not None:  # type: ignore[arg-type]
        decode_control(encode_control(msg))  # every forwarded copy is still sendable
        hops += 1

    assert hops == MAX_TTL


@pytest.mark.parametrize("msg", [ANNOUNCE, SKIP, PEERS], ids=lambda m: type(m).__name__)
def test_forwarded_refuses_neighbour_only_messages(msg: ControlMessage) -> None:
    with pytest.raises(TypeError):
        forwarded(msg)  # type: ignore[arg-type]


# --- fuzzing: nothing but CodecError, and whatever decodes is sendable --------------------

def _decodes_or_codec_error(data: bytes | bytearray) -> ControlMessage | None:
    try:
        msg = decode_control(data)
    except CodecError as exc:
        assert exc.reason in REASONS
        return None
    assert encode_control(msg) is not None  # anything accepted can be re-sent
    assert decode_control(encode_control(msg)) == msg
    return msg


@given(st.binary(max_size=512))
@FUZZ
def test_random_bytes_raise_only_codec_error(data: bytes) -> None:
    _decodes_or_codec_error(data)


_msgpack_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats()
    | st.text(max_size=20) | st.binary(max_size=20),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@given(_msgpack_values)
@FUZZ
def test_random_msgpack_objects_raise_only_codec_error(obj: Any) -> None:
    _decodes_or_codec_error(_pack(obj))


_field_values = (
    _msgpack_values | counts | st.integers(-3, MAX_TTL + 3) | peer_ids | digests | finite
    | records | st.lists(st.lists(_msgpack_values, max_size=3), max_size=3)
    | st.sampled_from([math.nan, math.inf, -0.0, "", "a\nb", 2**63, -1])
)


@given(st.sampled_from(EXAMPLES), st.data())
@FUZZ
def test_messages_with_random_field_values_raise_only_codec_error(
        msg: ControlMessage, data: st.DataObject) -> None:
    wire = _wire(msg)
    for name in data.draw(st.lists(st.sampled_from(sorted(wire)), max_size=3)):
        wire[name] = data.draw(_field_values)

    decoded = _decodes_or_codec_error(_pack(wire))

    if decoded is not None:  # anything accepted was valid to begin with
        assert type(decoded) is type(msg)


@given(messages, st.data())
@FUZZ
def test_mutated_valid_messages_raise_only_codec_error(
        msg: ControlMessage, data: st.DataObject) -> None:
    buf = bytearray(encode_control(msg))
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "delete", "insert"]))
        pos = data.draw(st.integers(0, len(buf)))
        if op == "insert":
            buf[pos:pos] = data.draw(st.binary(min_size=1, max_size=4))
        elif buf and pos < len(buf):
            if op == "flip":
                buf[pos] ^= data.draw(st.integers(1, 255))
            else:
                del buf[pos]

    _decodes_or_codec_error(buf)
