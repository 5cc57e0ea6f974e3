"""Wire format for a model's weights: a small msgpack header, then the raw tensor bytes.

Layout of one encoded message (format version 1)::

    offset 0   4 bytes   magic b"MSW1"
    offset 4   4 bytes   header length H, unsigned big-endian, 1 <= H <= MAX_HEADER_BYTES
    offset 8   H bytes   msgpack map (the header, fields below)
               0-7 bytes zero padding, so the body starts at a multiple of 8
    body       tensors in header order, each C-contiguous and little-endian; before each
               non-empty tensor, zero padding up to the next multiple of 8 (counted from the
               start of the message), so decoded views are aligned. Empty tensors take no bytes.

Header keys: ``version`` (int, :data:`FORMAT_VERSION`), ``model_id`` (str), ``round``
(int >= 0), ``sender`` (str), ``sample_count`` (int >= 0), ``names`` (list of unique non-empty
str), ``dtypes`` (list of numpy dtype strings from :data:`ALLOWED_DTYPES`, the dtype the
receiver gets back), ``shapes`` (list of lists of int), ``float16`` (bool: tensors whose dtype
is ``"<f4"`` travel as ``"<f2"``), ``body_len`` (int, body bytes including padding) and
``checksum`` (xxh3-64 of the body as an unsigned int). One optional key: ``q8`` (list, one
entry per tensor: nil, or the finite scale ``s >= 0`` of a ``"<f4"`` tensor that travels as
``"|i1"`` values ``q`` in ``[-127, 127]`` and decodes to ``q * s``: 8-bit quantisation with one
scale per tensor, a quarter of float32's bytes) and ``choco`` (a map: the message is a
CHOCO difference to the sender's public copy, or that copy itself; ``gossip.delta``). No
other keys are allowed.

The checksum catches corruption, not forgery: it is fast, not cryptographic. Use
:func:`digest` (BLAKE2b) to check a fetched message against what its sender announced.

Every malformed input raises :class:`~gossip.errors.CodecError` whose ``reason`` is one of
:data:`REASONS`:

``oversized``       input, or encoded output, larger than ``max_bytes``
``truncated``       input ends before the magic, header or body does
``bad-magic``       the first four bytes are not ``b"MSW1"``
``not-msgpack``     the header bytes are not exactly one msgpack object
``bad-header``      header not a map, fields missing, unknown or ill-typed, lists of unequal
                    length, a ``q8`` scale that is negative or not finite or set for a tensor
                    that is not float32, a quantised value of -128, negative round or sample count, empty or duplicate names,
                    header larger than MAX_HEADER_BYTES, non-zero header padding; on encode
                    also an ill-typed message field
``bad-version``     ``version`` is an int other than :data:`FORMAT_VERSION`
``bad-dtype``       dtype outside :data:`ALLOWED_DTYPES`, a value that is not a numpy array,
                    or a bool tensor holding bytes other than 0 and 1
``shape-mismatch``  negative or too many dimensions, absurdly large shape, or byte count
                    implied by dtypes and shapes differs from ``body_len``
``trailing-bytes``  input longer than header plus body
``bad-checksum``    body does not match its checksum
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np
import xxhash

from gossip.delta import ChocoHeader
from gossip.errors import CodecError
from gossip.quantize import check_scales, dequantize_q8, quantize_q8

FORMAT_VERSION: int = 1
DEFAULT_MAX_MESSAGE_BYTES: int = 256 * 1024 * 1024
#: Largest header accepted, checked before the header is unpacked.
MAX_HEADER_BYTES: int = 1024 * 1024
#: Most dimensions a tensor may have (numpy 1.x's limit).
MAX_NDIM: int = 32
MAGIC: bytes = b"MSW1"
#: Wire dtypes (numpy ``dtype.str``) a message may carry.
ALLOWED_DTYPES: frozenset[str] = frozenset(
    {"<f2", "<f4", "<f8", "|i1", "<i2", "<i4", "<i8", "|u1", "|b1"}
)
REASONS: frozenset[str] = frozenset(
    {
        "oversized", "truncated", "bad-magic", "not-msgpack", "bad-header", "bad-version",
        "bad-dtype", "shape-mismatch", "trailing-bytes", "bad-checksum",
    }
)

_PREFIX = struct.Struct(">4sI")
_ALIGN = 8
_MAX_INT = 2**63 - 1
_HEADER_KEYS = frozenset(
    {"version", "model_id", "round", "sender", "sample_count", "names", "dtypes", "shapes",
     "float16", "body_len", "checksum"}
)
_OPTIONAL_KEYS = frozenset({"q8", "choco"})


@dataclass(frozen=True, eq=False)
class WeightsMessage:
    """One peer's model weights for one round, as sent over the wire.

    Equality is exact: same fields, same tensor names in the same order, same dtypes,
    shapes and bytes (so NaNs with equal bits compare equal). Not hashable.
    """

    model_id: str
    round: int
    sender: str
    sample_count: int
    tensors: dict[str, np.ndarray]  # insertion order = wire order
    #: a CHOCO difference or public copy (``gossip.delta.ChocoHeader``); None: a whole model
    choco: Any = None

    def __eq__(self, other: object) -> bool:
        """Exact comparison (see the class docstring); arrays make the default one ambiguous."""
        if not isinstance(other, WeightsMessage):
            return NotImplemented
        if (self.model_id, self.round, self.sender, self.sample_count, self.choco) != (
            other.model_id, other.round, other.sender, other.sample_count, other.choco
        ):
            return False
        if list(self.tensors) != list(other.tensors):
            return False
        for name, a in self.tensors.items():
            b = other.tensors[name]
            if a.dtype != b.dtype or a.shape != b.shape:
                return False
            if a.tobytes() != b.tobytes():
                return False
        return True


def _align(offset: int) -> int:
    return -(-offset // _ALIGN) * _ALIGN


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _check_fields(model_id: object, round_: object, sender: object, sample_count: object,
                  names: Sequence[object]) -> None:
    """Raise ``bad-header`` unless the scalar fields and tensor names are well formed."""
    if not isinstance(model_id, str):
        raise CodecError("bad-header", f"model_id must be str, got {type(model_id).__name__}")
    if not isinstance(sender, str):
        raise CodecError("bad-header", f"sender must be str, got {type(sender).__name__}")
    for field, value in (("round", round_), ("sample_count", sample_count)):
        if not _is_int(value):
            raise CodecError("bad-header", f"{field} must be int, got {type(value).__name__}")
        if not 0 <= int(value) <= _MAX_INT:  # type: ignore[call-overload]
            raise CodecError("bad-header", f"{field} must be in [0, 2**63), got {value}")
    seen: set[str] = set()
    for name in names:
        if not isinstance(name, str) or not name:
            raise CodecError("bad-header", f"tensor name must be a non-empty str, got {name!r}")
        if name in seen:
            raise CodecError("bad-header", f"duplicate tensor name {name!r}")
        seen.add(name)


def _nbytes(name: str, shape: tuple[int, ...], itemsize: int) -> int:
    """Byte size of a tensor, or ``shape-mismatch`` for shapes numpy could never hold."""
    if len(shape) > MAX_NDIM:
        raise CodecError("shape-mismatch", f"tensor {name!r} has {len(shape)} dims > {MAX_NDIM}")
    if any(d < 0 for d in shape):
        raise CodecError("shape-mismatch", f"tensor {name!r} has a negative dim in {shape}")
    # numpy refuses shapes whose non-zero dims overflow intp, even when the size is 0.
    if math.prod(d for d in shape if d) * itemsize > _MAX_INT:
        raise CodecError("shape-mismatch", f"tensor {name!r} shape {shape} is too large")
    return math.prod(shape) * itemsize


def _layout(sizes: list[int]) -> tuple[list[int], int]:
    """Offsets of each tensor from the body start, and the body length with padding.

    The body starts on a multiple of 8, so aligning offsets within it aligns them in the
    message too.
    """
    offsets, end = [], 0
    for size in sizes:
        if size:
            end = _align(end)
        offsets.append(end)
        end += size
    return offsets, end


def encode(msg: WeightsMessage, *, float16: bool = False, q8: bool = False,
           max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> memoryview:
    """Serialise a weights message into one read-only buffer (layout in the module docstring).

    The result is a ``memoryview`` over a numpy byte array rather than ``bytes``: numpy
    allocates large buffers with huge pages, which makes encoding a 50 MB model about
    three times faster than building a ``bytes`` object here. Sockets, trio streams,
    ``decode`` and ``bytes(...)`` all accept it.

    The tensor bytes are copied once, straight into the result (plus one conversion for
    tensors that are non-contiguous, big-endian or sent as float16). With ``float16=True``,
    float32 tensors travel as float16 (half the bytes, about 3 significant digits; values
    beyond float16's range, about 6.5e4, silently become inf, which receivers' validation
    rejects); other dtypes are sent unchanged. With ``q8=True``, float32 tensors travel as
    8-bit integers with one scale each (:func:`quantize_q8`; takes precedence over float16).
    Tensors may also be numpy scalars (0-d).

    Raises
    ------
    CodecError
        ``bad-header`` for ill-typed fields, a negative round or sample count, bad or duplicate
        names, or a header over :data:`MAX_HEADER_BYTES`; ``bad-dtype`` for a value that is not
        a numpy array or has a dtype outside :data:`ALLOWED_DTYPES`; ``oversized`` when the
        result would exceed ``max_bytes``; ``bad-header`` for a quantised tensor holding
        NaN or Inf.
    """
    if not isinstance(msg, WeightsMessage) or not isinstance(msg.tensors, dict):
        raise CodecError("bad-header", "expected a WeightsMessage with a dict of tensors")
    names = list(msg.tensors)
    _check_fields(msg.model_id, msg.round, msg.sender, msg.sample_count, names)
    dtypes, wire_dtypes, shapes, sizes = [], [], [], []
    values: list[Any] = []
    scales: list[float | None] = []
    for name, arr in msg.tensors.items():
        if not isinstance(arr, (np.ndarray, np.generic)):  # a numpy scalar is a 0-d tensor
            raise CodecError("bad-dtype", f"tensor {name!r} is a {type(arr).__name__}, "
                             "expected numpy.ndarray")
        dtype = arr.dtype.newbyteorder("<")
        if dtype.str not in ALLOWED_DTYPES:
            raise CodecError("bad-dtype", f"tensor {name!r} has unsupported dtype {arr.dtype}")
        wire = np.dtype("<f2") if float16 and dtype.str == "<f4" else dtype
        scale: float | None = None
        if q8 and dtype.str == "<f4":
            arr, scale = quantize_q8(arr)
            if not math.isfinite(scale):
                raise CodecError("bad-header", f"tensor {name!r} holds NaN or Inf: cannot quantise")
            wire = np.dtype("|i1")
        values.append(arr)
        scales.append(scale)
        dtypes.append(dtype.str)
        wire_dtypes.append(wire)
        shapes.append(list(arr.shape))
        sizes.append(arr.size * wire.itemsize)
    offsets, body_len = _layout(sizes)
    if body_len > max_bytes:  # early out before converting anything
        raise CodecError("oversized", f"body alone would be {body_len} bytes > {max_bytes}")

    pieces: list[Any] = []
    hasher = xxhash.xxh3_64()
    end = 0
    with np.errstate(over="ignore"):
        for arr, wire, offset, size in zip(values, wire_dtypes, offsets, sizes):
            if not size:
                continue
            if offset > end:
                pieces.append(bytes(offset - end))
                hasher.update(pieces[-1])
            flat = np.ascontiguousarray(arr, dtype=wire).reshape(-1).view(np.uint8).data
            pieces.append(flat)
            hasher.update(flat)
            end = offset + size
    header = {
        "version": FORMAT_VERSION, "model_id": msg.model_id, "round": int(msg.round),
        "sender": msg.sender, "sample_count": int(msg.sample_count), "names": names,
        "dtypes": dtypes, "shapes": shapes, "float16": bool(float16), "body_len": body_len,
        "checksum": hasher.intdigest(),
    }
    if q8:
        header["q8"] = scales
    if msg.choco is not None:
        header["choco"] = msg.choco.to_wire()
    try:
        packed = msgpack.packb(header)
    except Exception as exc:  # noqa: BLE001 - e.g. a lone surrogate cannot be UTF-8 encoded
        raise CodecError("bad-header", f"cannot pack header: {exc}") from None
    if len(packed) > MAX_HEADER_BYTES:
        raise CodecError("bad-header", f"header is {len(packed)} bytes > {MAX_HEADER_BYTES}")
    body_start = _align(_PREFIX.size + len(packed))
    if body_start + body_len > max_bytes:
        raise CodecError("oversized", f"encoded message would be {body_start + body_len} "
                         f"bytes > {max_bytes}")
    padding = bytes(body_start - _PREFIX.size - len(packed))
    prefix = _PREFIX.pack(MAGIC, len(packed)) + packed + padding
    out = np.empty(len(prefix) + body_len, dtype=np.uint8)
    out[len(prefix) + end :] = 0
    out[: len(prefix)] = np.frombuffer(prefix, dtype=np.uint8)
    pos = len(prefix)
    for piece in pieces:
        chunk = np.frombuffer(piece, dtype=np.uint8)
        out[pos : pos + len(chunk)] = chunk
        pos += len(chunk)
    out.flags.writeable = False
    return out.data


def _unpack_header(view: memoryview, max_bytes: int) -> tuple[dict[str, Any], int]:
    """Check size, magic and header length, then unpack the header map."""
    if len(view) > max_bytes:
        raise CodecError("oversized", f"message is {len(view)} bytes > {max_bytes}")
    if len(view) < _PREFIX.size:
        raise CodecError("truncated", f"message is {len(view)} bytes, prefix needs 8")
    magic, header_len = _PREFIX.unpack_from(view)
    if magic != MAGIC:
        raise CodecError("bad-magic", f"expected {MAGIC!r}, got {bytes(magic)!r}")
    if header_len > MAX_HEADER_BYTES:
        raise CodecError("bad-header", f"header length {header_len} > {MAX_HEADER_BYTES}")
    body_start = _align(_PREFIX.size + header_len)
    if len(view) < body_start:
        raise CodecError("truncated", f"message is {len(view)} bytes, header needs {body_start}")
    try:
        header = msgpack.unpackb(view[_PREFIX.size:_PREFIX.size + header_len], raw=False,
                                 strict_map_key=True, use_list=True)
    except Exception as exc:  # noqa: BLE001 - msgpack raises ValueError, StackError, ...
        raise CodecError("not-msgpack", f"{type(exc).__name__}: {exc}") from None
    if any(view[_PREFIX.size + header_len:body_start]):
        raise CodecError("bad-header", "header padding is not zero")
    if not isinstance(header, dict):
        raise CodecError("bad-header", f"header is a {type(header).__name__}, not a map")
    return header, body_start


def _check_header(header: dict[str, Any]) -> None:
    """Raise ``bad-version`` or ``bad-header`` unless every header field is well typed."""
    version = header.get("version")
    if not _is_int(version):
        raise CodecError("bad-header", "version missing or not an int")
    if version != FORMAT_VERSION:
        raise CodecError("bad-version", f"format version {version}, expected {FORMAT_VERSION}")
    if not _HEADER_KEYS <= set(header) <= _HEADER_KEYS | _OPTIONAL_KEYS:
        missing, extra = _HEADER_KEYS - set(header), set(header) - _HEADER_KEYS - _OPTIONAL_KEYS
        raise CodecError("bad-header", f"missing keys {sorted(map(repr, missing))}, unknown {sorted(map(repr, extra))}")
    for key in ("names", "dtypes", "shapes"):
        if not isinstance(header[key], list):
            raise CodecError("bad-header", f"{key} must be a list")
    if not len(header["names"]) == len(header["dtypes"]) == len(header["shapes"]):
        raise CodecError("bad-header", "names, dtypes and shapes differ in length")
    _check_fields(header["model_id"], header["round"], header["sender"],
                  header["sample_count"], header["names"])
    if not isinstance(header["float16"], bool):
        raise CodecError("bad-header", "float16 must be a bool")
    for key in ("body_len", "checksum"):
        if not _is_int(header[key]) or header[key] < 0:
            raise CodecError("bad-header", f"{key} must be a non-negative int")
    for dtype in header["dtypes"]:
        if not isinstance(dtype, str) or dtype not in ALLOWED_DTYPES:
            raise CodecError("bad-dtype", f"unsupported dtype {dtype!r}")
    for shape in header["shapes"]:
        if not isinstance(shape, list) or not all(_is_int(d) for d in shape):
            raise CodecError("bad-header", f"shape must be a list of ints, got {shape!r}")
    if "q8" in header:
        check_scales(header["q8"], header["dtypes"])
    if "choco" in header:
        header["choco"] = ChocoHeader.from_wire(header["choco"])


def decode(data: bytes | bytearray | memoryview, *,
           max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> WeightsMessage:
    """Parse and check one encoded message; the inverse of :func:`encode`.

    Zero-copy: unless the message used float16 transport, every non-empty tensor is a
    read-only ``np.frombuffer`` view into ``data`` (aligned when ``data`` starts on an
    8-byte boundary, as bytes objects do). The views keep ``data`` alive; if ``data`` is a
    bytearray that the caller later changes, the tensors change too. Tensors sent as float16 or q8
    come back as new, writable float32 arrays. Nothing is allocated for a tensor before the
    body's size and checksum have been verified.

    Raises
    ------
    CodecError
        For any malformed input, with ``reason`` from :data:`REASONS` (see module docstring).
    TypeError
        If ``data`` is not a C-contiguous bytes-like object (a programming error).
    """
    view = memoryview(data)
    if not view.c_contiguous:
        raise TypeError("decode needs a C-contiguous bytes-like object")
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    header, body_start = _unpack_header(view, max_bytes)
    _check_header(header)

    names: list[str] = header["names"]
    dtypes = [np.dtype(d) for d in header["dtypes"]]
    scales = header.get("q8") or [None] * len(names)
    wire = [np.dtype("|i1") if q is not None else
            np.dtype("<f2") if header["float16"] and d.str == "<f4" else d for d, q in zip(dtypes, scales)]
    shapes = [tuple(int(d) for d in s) for s in header["shapes"]]
    sizes = [_nbytes(n, s, w.itemsize) for n, s, w in zip(names, shapes, wire)]
    offsets, body_len = _layout(sizes)
    if body_len != header["body_len"]:
        raise CodecError("shape-mismatch", f"dtypes and shapes imply a {body_len}-byte body, "
                         f"header says {header['body_len']}")
    end = body_start + body_len
    if len(view) < end:
        raise CodecError("truncated", f"message is {len(view)} bytes, body needs {end}")
    if len(view) > end:
        raise CodecError("trailing-bytes", f"{len(view) - end} bytes after the body")
    if xxhash.xxh3_64_intdigest(view[body_start:]) != header["checksum"]:
        raise CodecError("bad-checksum", "body does not match its checksum")

    tensors: dict[str, np.ndarray] = {}
    for name, dtype, wdt, shape, offset, size, scale in zip(names, dtypes, wire, shapes, offsets, sizes,
                                                            scales):
        if size:
            arr = np.frombuffer(view, dtype=wdt, count=size // wdt.itemsize,
                                offset=body_start + offset)
            if wdt.kind == "b" and np.any(arr.view(np.uint8) > 1):
                raise CodecError("bad-dtype", f"bool tensor {name!r} holds bytes other than 0/1")
            arr = arr.reshape(shape)
        else:
            arr = np.empty(shape, dtype=wdt)
        arr.flags.writeable = False
        if scale is not None:
            tensors[name] = dequantize_q8(name, arr, scale)
        else:
            tensors[name] = arr.astype(dtype) if wdt != dtype else arr
    return WeightsMessage(header["model_id"], int(header["round"]), header["sender"],
                          int(header["sample_count"]), tensors, header.get("choco"))


def digest(data: bytes | bytearray | memoryview) -> str:
    """Hex BLAKE2b-128 digest of a whole encoded message.

    A peer announces this digest with a model; whoever fetches the model recomputes it
    to check the bytes are the ones announced (unlike the body checksum, it resists forgery).
    """
    return hashlib.blake2b(data, digest_size=16).hexdigest()
