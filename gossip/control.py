"""Small control messages that peers gossip: announcements, skips, progress, stop decisions
and peer exchange.

Weights travel separately (pulled from neighbours, see :mod:`gossip.codec`); these messages
only say who has what and how the swarm is doing, so they stay tiny. Gossipsub drops messages
over about 1 MiB; :data:`MAX_CONTROL_BYTES` (64 KiB) is enforced on encode and decode, and a
valid message is in fact at most a few KiB because every string is bounded.

Wire format (version 2): one msgpack map ``{"v": 2, "t": <type>, <field>: <value>, ...}``
where ``<type>`` is ``"announce"``, ``"skip"``, ``"progress"``, ``"stop"``, ``"summary"`` or
``"peers"`` and
the fields are exactly those of the matching dataclass, under the same names (a
:class:`PeerRecord` goes as the two-element array ``[peer_id, [addr, ...]]``). Encoding is deterministic
(fixed key order), but :func:`forwarded` changes ``ttl``, so deduplicate flooded messages by
``(origin, seq)``, never by their bytes. Only stop decisions are flooded; a progress record
goes to the origin's neighbours (``ttl`` 0) and, when it carries news the whole swarm needs
(a vote, a round among the highest), is pushed on along gossip edges by anti-entropy
(``swarm.swarm_view``), never forwarded on receipt.

Field rules, checked by both :func:`encode_control` and :func:`decode_control`:

* peer ids (``sender``, ``origin``): non-empty printable ``str`` of at most
  :data:`MAX_ID_CHARS` characters (printable: no newlines or control characters, so an id
  cannot forge a log line);
* ``reason``: printable ``str`` of at most :data:`MAX_REASON_CHARS` characters;
* ``digest``: exactly 32 lowercase hex characters, as :func:`gossip.codec.digest` returns,
  sent as its 16 bytes (msgpack bin; the one field whose wire value is not its Python
  value: an announcement crosses every gossip edge, and 16 of its 107 bytes were hex);
* counts (``round``, ``step``, ``size``, ``degree``, ``seq``, ``streak``, ``stop_round``):
  ``int`` in ``[0, 2**63)``; ``samples`` in ``[1, 2**63)``; ``ttl`` in ``[0, MAX_TTL]``.
  A ``bool`` is not an ``int``;
* ``loss``, ``metric``: ``None`` or a finite number; ``distance``: ``None`` or a finite
  number ``>= 0``. An ``int`` is accepted and becomes a ``float``;
* ``converged``: ``bool``;
* ``voted`` (summary): a member bitmap as :func:`gossip.bitset.pack_bits` writes it (zlib, at
  most :data:`gossip.bitset.MAX_BITMAP_WIRE` bytes, inflating to at most
  :data:`gossip.bitset.MAX_INDEX_BITS` bits); ``live``: an array of 1 to
  :data:`MAX_LIVE_EPOCHS` such bitmaps;
* ``sig``: ``bytes`` (msgpack bin) of length 0 (unsigned) or :data:`SIGNATURE_BYTES`; the
  origin's Ed25519 signature over :func:`signed_content` (checked by the receiver's
  protocol, not here);
* ``peers``: an array of at most :data:`MAX_PEER_RECORDS` records with distinct peer ids,
  each ``[peer id, addrs]`` with the peer id ruled as above and ``addrs`` an array of 1 to
  :data:`MAX_RECORD_ADDRS` distinct addresses, each a visible-ASCII ``str`` (``!`` to
  ``~``: no space, no control or non-ASCII character) of 1 to :data:`MAX_ADDR_CHARS`
  characters starting with ``/`` (a multiaddr's text form; whether it parses and dials is
  for the receiver to find out).

Every malformed input raises :class:`~gossip.errors.CodecError` with ``reason`` from
:data:`REASONS`, checked in this order:

``oversized``       input (or encoded output) longer than :data:`MAX_CONTROL_BYTES`
``not-msgpack``     not one complete msgpack object (empty, truncated, invalid UTF-8 in a
                    string, a non-string map key, ...)
``trailing-bytes``  bytes left over after one complete msgpack object
``bad-field``       not a map; a duplicate key; ``"v"`` missing or not an ``int``; ``"t"``
                    missing or not a ``str``; a field missing, unknown or breaking the rules
                    above. On encode: any field breaking the rules
``bad-version``     ``"v"`` is an ``int`` other than :data:`CONTROL_VERSION` (checked before
                    the fields, so a newer peer's message is reported as such)
``bad-type``        ``"t"`` is a ``str`` naming no known message type. On encode: an object
                    that is not one of the six message classes
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, NamedTuple, TypeAlias

import msgpack

from gossip.bitset import unpack_bits
from gossip.errors import CodecError

#: 2: a digest goes as 16 bytes, not hex; a summary's live epochs go oldest first (1 before)
CONTROL_VERSION: int = 2
MAX_CONTROL_BYTES: int = 64 * 1024
#: Most hops a flooded message may still travel.
MAX_TTL: int = 64
#: Longest peer id (``sender``, ``origin``), in characters.
MAX_ID_CHARS: int = 256
#: Longest stop ``reason``, in characters.
MAX_REASON_CHARS: int = 200
#: Most (peer id, addresses) records in one :class:`PeerExchange`.
MAX_PEER_RECORDS: int = 16
#: Most addresses in one :class:`PeerRecord`.
MAX_RECORD_ADDRS: int = 4
#: Longest address in a :class:`PeerRecord`, in characters (visible ASCII).
MAX_ADDR_CHARS: int = 200
#: Most liveness epochs a :class:`Summary` carries bitmaps of.
MAX_LIVE_EPOCHS: int = 16
#: Length of an Ed25519 signature (``sig`` of flooded records).
SIGNATURE_BYTES: int = 64
#: Length of a weights digest (:func:`gossip.codec.digest`, BLAKE2b-128 in hex).
DIGEST_HEX_CHARS: int = 32
REASONS: frozenset[str] = frozenset(
    {"oversized", "not-msgpack", "bad-version", "bad-type", "bad-field", "trailing-bytes"}
)

_MAX_INT = 2**63 - 1
_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class Announce:
    """I have a model for ``(round, step)``; pull it from me.

    ``digest`` and ``size`` describe the encoded weights message, so a puller can check
    what it fetched; ``samples`` and ``degree`` let it weight the model when averaging.
    """

    sender: str
    round: int
    step: int
    digest: str
    size: int
    samples: int
    degree: int


@dataclass(frozen=True)
class Skip:
    """I will not offer a model for ``(round, step)`` (e.g. I am catching up); don't wait."""

    sender: str
    round: int
    step: int


@dataclass(frozen=True)
class Progress:
    """One peer's progress record, flooded to the whole swarm (deduplicate by (origin, seq)).

    ``seq`` increases strictly per origin; ``streak`` counts the rounds the ``converged``
    vote has held; ``ttl`` is the number of hops the record may still travel.
    """

    origin: str
    seq: int
    round: int
    loss: float | None
    metric: float | None
    distance: float | None
    converged: bool
    streak: int
    ttl: int
    #: the origin's Ed25519 signature over :func:`signed_content` (empty: unsigned)
    sig: bytes = b""


@dataclass(frozen=True)
class StopDecision:
    """The swarm has converged (or hit max rounds): every peer stops after ``stop_round``.

    One member's decision is a proposal: a receiver acts on it only when its own signed
    votes corroborate it (``swarm.stop_agreement``)."""

    origin: str
    seq: int
    stop_round: int
    reason: str
    ttl: int
    #: the origin's Ed25519 signature over :func:`signed_content` (empty: unsigned)
    sig: bytes = b""


@dataclass(frozen=True)
class Summary:
    """What the sender knows of the whole swarm, merged from its neighbours: sent to
    neighbours only (each heartbeat, and early when it learnt something), never flooded.

    ``epoch`` is the sender's liveness epoch; ``live`` the members (bitmaps by member index)
    heard alive in that epoch and the ones before it, oldest first, the last being ``epoch``
    (1 to :data:`MAX_LIVE_EPOCHS`; the first as it is, each later completed one as its XOR with
    the one before, so that they, nearly alike, compress to a few bytes; the last, the
    current epoch, as it is and holding only the sender's own sightings, a few bits: what it
    merged this epoch goes on once the epoch is over); ``voted`` the members whose
    latest signed progress record the sender holds says converged. None of it is trusted:
    live bits are OR-merged (a liar can only keep a member looking alive, which delays a stop
    as withholding its own vote would), and a voted bit counts only once its signed record
    is held (``swarm.swarm_view``): ``voted`` only says which records to push.
    """

    sender: str
    epoch: int
    live: tuple[bytes, ...]
    voted: bytes


class PeerRecord(NamedTuple):
    """How to reach one member: its peer id and the multiaddrs to dial it at."""

    peer_id: str
    addrs: tuple[str, ...]


@dataclass(frozen=True)
class PeerExchange:
    """Members the sender knows how to reach, itself included (first when it has addresses).

    Sent to a neighbour only, never flooded: when the link comes up, when the sender's table
    changes and now and then. The receiver must check ``sender`` against the link.
    """

    sender: str
    peers: tuple[PeerRecord, ...]


ControlMessage: TypeAlias = Announce | Skip | Progress | StopDecision | Summary | PeerExchange


# --- field checks: each returns the value normalised for the wire, or raises bad-field ---

def _bad(name: str, rule: str, value: object) -> CodecError:
    shown = repr(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return CodecError("bad-field", f"{name} must be {rule}, got {type(value).__name__} {shown}")


def _text(name: str, value: object, *, max_chars: int, allow_empty: bool) -> str:
    rule = f"a printable str of {0 if allow_empty else 1} to {max_chars} chars"
    if not isinstance(value, str) or len(value) > max_chars or not value.isprintable():
        raise _bad(name, rule, value)
    if not value and not allow_empty:
        raise _bad(name, rule, value)
    return str(value)  # printable implies valid UTF-8: lone surrogates are not printable


def _peer_id(name: str, value: object) -> str:
    return _text(name, value, max_chars=MAX_ID_CHARS, allow_empty=False)


def _reason(name: str, value: object) -> str:
    return _text(name, value, max_chars=MAX_REASON_CHARS, allow_empty=True)


def _digest(name: str, value: object) -> str:
    if not (isinstance(value, str) and len(value) == DIGEST_HEX_CHARS and set(value) <= _HEX):
        raise _bad(name, f"{DIGEST_HEX_CHARS} lowercase hex chars", value)
    return str(value)


def _digest_from_wire(name: str, value: object) -> str:
    """A digest as it arrives: its 16 bytes, returned as the hex the dataclass holds."""
    if not (isinstance(value, bytes) and len(value) == DIGEST_HEX_CHARS // 2):
        raise _bad(name, f"{DIGEST_HEX_CHARS // 2} bytes", value)
    return value.hex()


#: fields whose wire value differs from their Python value: (to the wire, from the wire)
_WIRE_FORMS: dict[str, tuple[Callable[[str], Any], Callable[[str, object], Any]]] = {
    "digest": (bytes.fromhex, _digest_from_wire),
}


def _int_in(low: int, high: int) -> Callable[[str, object], int]:
    def check(name: str, value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise _bad(name, f"an int in [{low}, {high}]", value)
        return int(value)
    return check


_count = _int_in(0, _MAX_INT)
_positive = _int_in(1, _MAX_INT)
_ttl = _int_in(0, MAX_TTL)


def _float_or_none(name: str, value: object, *, non_negative: bool) -> float | None:
    if value is None:
        return None
    rule = "None or a finite number" + (" >= 0" if non_negative else "")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _bad(name, rule, value)
    try:
        number = float(value)
    except OverflowError:  # an int beyond float range
        raise _bad(name, rule, value) from None
    if not math.isfinite(number) or (non_negative and number < 0):
        raise _bad(name, rule, value)
    return number


def _finite(name: str, value: object) -> float | None:
    return _float_or_none(name, value, non_negative=False)


def _non_negative(name: str, value: object) -> float | None:
    return _float_or_none(name, value, non_negative=True)


def _signature(name: str, value: object) -> bytes:
    if not isinstance(value, (bytes, bytearray)) or len(value) not in (0, SIGNATURE_BYTES):
        raise _bad(name, f"bytes of length 0 or {SIGNATURE_BYTES}", value)
    return bytes(value)


def _bitmap(name: str, value: object) -> bytes:
    if not isinstance(value, (bytes, bytearray)):
        raise _bad(name, "bytes (a zlib bitmap)", value)
    unpack_bits(bytes(value))  # bounded; raises bad-field
    return bytes(value)


def _bitmaps(name: str, value: object) -> tuple[bytes, ...]:
    if not isinstance(value, (list, tuple)) or not 0 < len(value) <= MAX_LIVE_EPOCHS:
        raise _bad(name, f"an array of 1 to {MAX_LIVE_EPOCHS} bitmaps", value)
    return tuple(_bitmap(f"{name}[{i}]", v) for i, v in enumerate(value))


def _flag(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise _bad(name, "a bool", value)
    return value


def _address(name: str, value: object) -> str:
    if not (isinstance(value, str) and 0 < len(value) <= MAX_ADDR_CHARS and value[0] == "/"
            and all("!" <= c <= "~" for c in value)):
        raise _bad(name, f"a visible-ASCII str of 1 to {MAX_ADDR_CHARS} chars starting with /",
                   value)
    return str(value)


def _peer_records(name: str, value: object) -> tuple[PeerRecord, ...]:
    if not isinstance(value, (list, tuple)) or len(value) > MAX_PEER_RECORDS:
        raise _bad(name, f"an array of at most {MAX_PEER_RECORDS} records", value)
    records: list[PeerRecord] = []
    seen: set[str] = set()
    for i, item in enumerate(value):
        where = f"{name}[{i}]"
        if not isinstance(item, (list, tuple)) or len(item) != 2:
            raise _bad(where, "a [peer id, addrs] pair", item)
        peer = _peer_id(f"{where}.peer_id", item[0])
        if peer in seen:
            raise _bad(f"{where}.peer_id", "distinct from the other records'", peer)
        seen.add(peer)
        addrs = item[1]
        if not isinstance(addrs, (list, tuple)) or not 0 < len(addrs) <= MAX_RECORD_ADDRS:
            raise _bad(f"{where}.addrs", f"an array of 1 to {MAX_RECORD_ADDRS} addresses", addrs)
        checked = tuple(_address(f"{where}.addrs", a) for a in addrs)
        if len(set(checked)) != len(checked):
            raise _bad(f"{where}.addrs", "distinct addresses", addrs)
        records.append(PeerRecord(peer, checked))
    return tuple(records)


_Check = Callable[[str, object], Any]

#: Wire type and ordered field checks of each message class (names match the dataclasses).
_SCHEMAS: dict[type, tuple[str, tuple[tuple[str, _Check], ...]]] = {
    Announce: ("announce", (
        ("sender", _peer_id), ("round", _count), ("step", _count), ("digest", _digest),
        ("size", _count), ("samples", _positive), ("degree", _count),
    )),
    Skip: ("skip", (("sender", _peer_id), ("round", _count), ("step", _count))),
    Progress: ("progress", (
        ("origin", _peer_id), ("seq", _count), ("round", _count), ("loss", _finite),
        ("metric", _finite), ("distance", _non_negative), ("converged", _flag),
        ("streak", _count), ("ttl", _ttl), ("sig", _signature),
    )),
    StopDecision: ("stop", (
        ("origin", _peer_id), ("seq", _count), ("stop_round", _count), ("reason", _reason),
        ("ttl", _ttl), ("sig", _signature),
    )),
    Summary: ("summary", (
        ("sender", _peer_id), ("epoch", _count), ("live", _bitmaps), ("voted", _bitmap),
    )),
    PeerExchange: ("peers", (("sender", _peer_id), ("peers", _peer_records))),
}
_BY_TAG: dict[str, tuple[type, tuple[tuple[str, _Check], ...]]] = {
    tag: (cls, checks) for cls, (tag, checks) in _SCHEMAS.items()
}


def encode_control(msg: ControlMessage) -> bytes:
    """Serialise a control message to msgpack (format in the module docstring).

    Every field is checked with the same rules the decoder applies, so a peer can never
    send what another peer would reject; ints in float fields are sent as floats.

    Raises
    ------
    CodecError
        ``bad-type`` if the type of ``msg`` is not exactly :class:`Announce`, :class:`Skip`,
        :class:`Progress`, :class:`StopDecision`, :class:`Summary` or :class:`PeerExchange`;
        ``bad-field`` for
        a field breaking the rules; ``oversized`` if the result exceeds
        :data:`MAX_CONTROL_BYTES`.
    """
    schema = _SCHEMAS.get(type(msg))
    if schema is None:
        raise CodecError("bad-type", f"not a control message: {type(msg).__name__}")
    tag, checks = schema
    wire: dict[str, Any] = {"v": CONTROL_VERSION, "t": tag}
    for name, check in checks:
        value = check(name, getattr(msg, name))
        wire[name] = _WIRE_FORMS[name][0](value) if name in _WIRE_FORMS else value
    try:
        packed: bytes = msgpack.packb(wire)
    except Exception as exc:  # noqa: BLE001 - unreachable after the checks; keep the contract
        raise CodecError("bad-field", f"cannot pack {tag}: {exc}") from None
    if len(packed) > MAX_CONTROL_BYTES:
        raise CodecError("oversized", f"{tag} is {len(packed)} bytes > {MAX_CONTROL_BYTES}")
    return packed


class _DuplicateKey(Exception):
    """Raised from inside msgpack when a map repeats a key."""


def _unique_map(pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
    # msgpack would silently keep the last value; another implementation may keep the first.
    result = dict(pairs)
    if len(result) != len(pairs):
        raise _DuplicateKey
    return result


def decode_control(data: bytes | bytearray | memoryview) -> ControlMessage:
    """Parse and check one control message; the inverse of :func:`encode_control`.

    Float fields always come back as ``float`` (or ``None``), even when sent as ints.

    Raises
    ------
    CodecError
        For any malformed input, with ``reason`` from :data:`REASONS` (see the module
        docstring). No other exception escapes for any bytes-like input.
    TypeError
        If ``data`` is not a bytes-like object (a programming error).
    """
    view = memoryview(data)
    if view.nbytes > MAX_CONTROL_BYTES:
        raise CodecError("oversized", f"message is {view.nbytes} bytes > {MAX_CONTROL_BYTES}")
    if not (view.c_contiguous and view.ndim == 1 and view.format == "B"):
        view = memoryview(view.tobytes())
    try:
        obj = msgpack.unpackb(view, raw=False, strict_map_key=True, use_list=True,
                              object_pairs_hook=_unique_map)
    except msgpack.ExtraData as exc:
        raise CodecError("trailing-bytes", f"{len(exc.extra)} bytes after the message") from None
    except _DuplicateKey:
        raise CodecError("bad-field", "a map repeats a key") from None
    except Exception as exc:  # noqa: BLE001 - msgpack raises ValueError, StackError, ...
        raise CodecError("not-msgpack", f"{type(exc).__name__}: {exc}") from None
    if not isinstance(obj, dict):
        raise CodecError("bad-field", f"message is a {type(obj).__name__}, not a map")

    version = obj.get("v")
    if isinstance(version, bool) or not isinstance(version, int):
        raise CodecError("bad-field", "v missing or not an int")
    if version != CONTROL_VERSION:
        raise CodecError("bad-version", f"control version {version}, expected {CONTROL_VERSION}")
    tag = obj.get("t")
    if not isinstance(tag, str):
        raise CodecError("bad-field", "t missing or not a str")
    if tag not in _BY_TAG:
        raise CodecError("bad-type", f"unknown message type {tag[:40]!r}")
    cls, checks = _BY_TAG[tag]

    expected = {"v", "t", *(name for name, _ in checks)}
    if obj.keys() != expected:
        missing = sorted(expected - obj.keys())
        unknown = sorted(repr(key)[:40] for key in obj.keys() - expected)  # str and bytes keys
        raise CodecError("bad-field", f"{tag}: missing {missing}, unknown {unknown[:5]}")
    values = {name: check(name, _WIRE_FORMS[name][1](name, obj[name]) if name in _WIRE_FORMS else obj[name])
              for name, check in checks}
    message: ControlMessage = cls(**values)
    return message


#: Fields a flooded record's signature does not cover: relays change ``ttl``.
_UNSIGNED = frozenset({"ttl", "sig"})


def signed_content(msg: Progress | StopDecision) -> bytes:
    """The bytes an origin signs for a flooded record: a domain tag, the wire type and every
    field except ``ttl`` (relays lower it) and ``sig``, packed in schema order. Fields are
    checked as on encode, so what is signed is exactly what goes on the wire.

    Raises
    ------
    CodecError
        ``bad-field`` for a field breaking the rules; ``bad-type`` for another message type.
    """
    if not isinstance(msg, (Progress, StopDecision)):
        raise CodecError("bad-type", f"only flooded records are signed, got {type(msg).__name__}")
    tag, checks = _SCHEMAS[type(msg)]
    fields = [check(name, getattr(msg, name)) for name, check in checks if name not in _UNSIGNED]
    packed: bytes = msgpack.packb(["medswarm-record", CONTROL_VERSION, tag, *fields])
    return packed


def forwarded(msg: Progress | StopDecision) -> Progress | StopDecision | None:
    """The copy of a flooded message to pass on: ``ttl`` one less, or ``None`` at ``ttl`` 0.

    A peer handles every message it receives, then forwards ``forwarded(msg)`` (if not
    ``None``) to its neighbours. Fields are not re-checked here; :func:`encode_control` does.

    Raises
    ------
    TypeError
        If ``msg`` is not a :class:`Progress` or :class:`StopDecision` (a programming error).
    """
    if not isinstance(msg, (Progress, StopDecision)):
        raise TypeError(f"only Progress and StopDecision are flooded, got {type(msg).__name__}")
    if msg.ttl <= 0:
        return None
    return replace(msg, ttl=msg.ttl - 1)

