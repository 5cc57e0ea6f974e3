"""CHOCO-gossip on the wire: a compressed difference to the sender's public copy.

A peer keeps a public copy ``x_hat`` of its model that its neighbours also hold (Koloskova
et al. 2019, "Decentralized stochastic optimization and gossip algorithms with compressed
communication"). Each exchange it sends ``q = C(x - x_hat)`` and both sides add ``q`` to
``x_hat``; what is not sent stays in ``x - x_hat`` and goes out later (error feedback).

A difference only applies to the copy it was made from: its ``ChocoHeader`` names the
``base`` digest (of the copy before) and the ``result`` digest (after), and where to fetch
the whole copy (``full``, ``full_size``) when the receiver's replica is another one (a
missed transfer, a restart). Digests are BLAKE2b over the tensors' names, dtypes, shapes
and bytes (:func:`tensors_digest`), so an applied difference is checked bit for bit.

Compressors (:class:`Compressor`): ``q8`` sends every float32 difference as int8 values
with one scale per tensor (``gossip.quantize``); ``topk:F`` keeps the ``ceil(F * size)``
largest-magnitude entries of each float32 tensor, as int32 indices (strictly increasing)
and float32 values. Other tensors (integer counters) travel whole and replace the copy's.
A malformed difference raises ``CodecError``; the rebuilt copy is then validated like any
model (``gossip.validate``) before it is kept or mixed.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from gossip.errors import CodecError
from gossip.quantize import Q8_MAX, dequantize_q8, quantize_q8

__all__ = ["ChocoHeader", "Compressor", "apply_difference", "compress_difference", "parse_compressor",
           "tensors_digest"]

KINDS = ("full", "q8", "topk")
#: suffix of a top-k tensor's indices (its values keep the tensor's name)
INDEX_SUFFIX = "@idx"
_DIGEST_LEN = 32  # hex chars of BLAKE2b-128


@dataclass(frozen=True)
class Compressor:
    """How a difference is compressed: ``q8`` or ``topk`` keeping ``fraction`` of each tensor."""

    kind: str
    fraction: float = 1.0

    def __str__(self) -> str:
        return "q8" if self.kind == "q8" else f"topk:{self.fraction:g}"


def parse_compressor(text: str) -> Compressor:
    """``q8`` or ``topk:F`` (0 < F <= 1) as a :class:`Compressor`; ``ValueError`` otherwise."""
    if text == "q8":
        return Compressor("q8")
    if text.startswith("topk:"):
        try:
            fraction = float(text[5:])
        except ValueError:
            raise ValueError(f"topk:F needs a number F, got {text!r}") from None
        if not 0 < fraction <= 1:
            raise ValueError(f"topk:F needs 0 < F <= 1, got {fraction:g}")
        return Compressor("topk", fraction)
    raise ValueError(f"expected q8 or topk:F, got {text!r}")


@dataclass(frozen=True)
class ChocoHeader:
    """The ``choco`` header key: what a message is relative to (see the module docstring)."""

    kind: str
    #: digest of the copy the difference applies to ("" for a whole copy)
    base: str
    #: digest of the copy once applied (of the tensors themselves for a whole copy)
    result: str
    #: digest and size of the sender's whole copy of the same phase ("" / 0 for a whole copy)
    full: str = ""
    full_size: int = 0
    #: q8: one scale per tensor (None for tensors sent whole)
    scales: tuple[float | None, ...] = ()

    def to_wire(self) -> dict[str, Any]:
        """The msgpack map of this header."""
        return {"kind": self.kind, "base": self.base, "result": self.result, "full": self.full,
                "full_size": self.full_size, "scales": list(self.scales)}

    @classmethod
    def from_wire(cls, value: object) -> "ChocoHeader":
        """Check and convert a received map; ``bad-header`` for anything ill-formed."""
        keys = {"kind", "base", "result", "full", "full_size", "scales"}
        if not isinstance(value, dict) or set(value) != keys:
            raise CodecError("bad-header", f"choco must be a map with keys {sorted(keys)}")
        kind, size, scales = value["kind"], value["full_size"], value["scales"]
        if kind not in KINDS:
            raise CodecError("bad-header", f"choco kind {kind!r}")
        for key in ("base", "result", "full"):
            digest = value[key]
            if not isinstance(digest, str) or len(digest) not in ((0, _DIGEST_LEN) if key != "result"
                                                                  else (_DIGEST_LEN,)):
                raise CodecError("bad-header", f"choco {key} must be a digest")
        if (kind == "full") != (value["base"] == "") or (kind == "full") != (value["full"] == ""):
            raise CodecError("bad-header", "a whole copy has no base nor full; a difference has both")
        if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size < 2**63:
            raise CodecError("bad-header", f"choco full_size {size!r}")
        if not isinstance(scales, list) or (scales and kind != "q8"):
            raise CodecError("bad-header", "choco scales must be a list, empty unless q8")
        for scale in scales:
            if scale is not None and not (isinstance(scale, float) and math.isfinite(scale) and scale >= 0):
                raise CodecError("bad-header", f"choco scale {scale!r}")
        return cls(kind, value["base"], value["result"], value["full"], size, tuple(scales))


def tensors_digest(tensors: Mapping[str, np.ndarray]) -> str:
    """Hex BLAKE2b-128 over every tensor's name, dtype, shape and bytes, in order."""
    h = hashlib.blake2b(digest_size=16)
    for name, arr in tensors.items():
        a = np.ascontiguousarray(arr)
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.reshape(-1).view(np.uint8).data)
    return h.hexdigest()


def _is_float32(arr: np.ndarray) -> bool:
    return arr.dtype == np.float32


def compress_difference(x: Mapping[str, np.ndarray], x_hat: Mapping[str, np.ndarray],
                        compressor: Compressor) -> tuple[dict[str, np.ndarray], tuple[float | None, ...],
                                                         dict[str, np.ndarray]]:
    """``(wire tensors, q8 scales, new copy)``: ``C(x - x_hat)`` and ``x_hat + C(x - x_hat)``.

    The new copy is computed with the very operations :func:`apply_difference` performs, so
    sender and receivers hold the same bits. Raises ``CodecError`` for a non-finite difference.
    """
    wire: dict[str, np.ndarray] = {}
    scales: list[float | None] = []
    new: dict[str, np.ndarray] = {}
    for name, arr in x.items():
        base = x_hat[name]
        if not _is_float32(base):
            wire[name] = new[name] = np.array(arr, copy=True)
            scales.append(None)
            continue
        diff = np.asarray(arr, dtype=np.float32) - base
        if compressor.kind == "q8":
            q, scale = quantize_q8(diff)
            if not math.isfinite(scale):
                raise CodecError("bad-header", f"tensor {name!r}: non-finite difference")
            wire[name] = q
            scales.append(scale)
            new[name] = base + dequantize_q8(name, q, scale)
        else:
            flat = diff.reshape(-1)
            k = min(flat.size, max(1, math.ceil(compressor.fraction * flat.size))) if flat.size else 0
            idx = np.sort(np.argpartition(np.abs(flat), flat.size - k)[flat.size - k:]).astype(np.int32) \
                if k < flat.size else np.arange(flat.size, dtype=np.int32)
            vals = flat[idx]
            if not np.isfinite(vals).all():
                raise CodecError("bad-header", f"tensor {name!r}: non-finite difference")
            wire[name], wire[name + INDEX_SUFFIX] = vals, idx
            new[name] = _add_sparse(base, idx, vals)
    return wire, tuple(scales) if compressor.kind == "q8" else (), new


def _add_sparse(base: np.ndarray, idx: np.ndarray, vals: np.ndarray) -> np.ndarray:
    out = np.array(base, dtype=np.float32, copy=True)
    flat = out.reshape(-1)
    flat[idx] = flat[idx] + vals
    return out


def apply_difference(replica: Mapping[str, np.ndarray], header: ChocoHeader,
                     tensors: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The replica with the received difference added (new arrays; ``replica`` is untouched).

    Raises ``CodecError`` (``shape-mismatch`` / ``bad-header``) if the difference does not fit
    the replica: other names, shapes or dtypes, indices out of range or not increasing.
    """
    expected = sum(2 if header.kind == "topk" and _is_float32(a) else 1 for a in replica.values())
    if len(tensors) != expected:
        raise CodecError("shape-mismatch", f"difference has {len(tensors)} tensors, expected {expected}")
    if header.kind == "q8" and len(header.scales) != len(replica):
        raise CodecError("bad-header", "one q8 scale per tensor expected")
    out: dict[str, np.ndarray] = {}
    for i, (name, base) in enumerate(replica.items()):
        got = tensors.get(name)
        if got is None:
            raise CodecError("shape-mismatch", f"difference lacks tensor {name!r}")
        if not _is_float32(base):
            if got.dtype != base.dtype or got.shape != base.shape:
                raise CodecError("shape-mismatch", f"tensor {name!r}: {got.dtype}{got.shape}")
            out[name] = np.array(got, copy=True)
        elif header.kind == "q8":
            scale = header.scales[i]
            if scale is None or got.dtype != np.int8 or got.shape != base.shape:
                raise CodecError("shape-mismatch", f"tensor {name!r} is not an int8 difference of its shape")
            if np.any(got == -Q8_MAX - 1):
                raise CodecError("bad-header", f"quantised tensor {name!r} holds -128")
            out[name] = base + dequantize_q8(name, got, scale)
        else:
            idx = tensors.get(name + INDEX_SUFFIX)
            if (idx is None or idx.dtype != np.int32 or got.dtype != np.float32 or idx.ndim != 1
                    or got.shape != idx.shape):
                raise CodecError("shape-mismatch", f"tensor {name!r}: top-k values and indices do not match")
            if idx.size and (idx[0] < 0 or idx[-1] >= base.size or np.any(np.diff(idx) <= 0)):
                raise CodecError("bad-header", f"tensor {name!r}: indices out of range or not increasing")
            out[name] = _add_sparse(base, idx, got)
    return out
