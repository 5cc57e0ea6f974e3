"""8-bit quantisation of float32 tensors for the wire (``encode(q8=True)`` in ``gossip.codec``).

One scale per tensor, symmetric: ``s = max|x| / 127``, ``q = round(x / s)`` in ``[-127, 127]``,
decoded as ``q * s``; each value is off by at most ``s / 2`` and the message carries a
quarter of float32's bytes. -128 is never sent, so a receiver refuses it, and a scale must
be a finite float ``>= 0`` on a ``"<f4"`` tensor. Whatever the scales, the rebuilt model is
then checked like any other (``gossip.validate``: values, norm, direction).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from gossip.errors import CodecError

__all__ = ["Q8_MAX", "check_scales", "dequantize_q8", "quantize_q8"]

#: largest magnitude of a quantised value (the range is symmetric)
Q8_MAX = 127


def quantize_q8(arr: np.ndarray) -> tuple[np.ndarray, float]:
    """``(q, s)``: int8 values and their scale, with ``q * s`` within ``s / 2`` of ``arr``.

    ``s`` is 0 for an all-zero or empty tensor. Non-finite values give a non-finite scale,
    which ``encode`` refuses.
    """
    flat = np.asarray(arr, dtype=np.float32)
    peak = float(np.max(np.abs(flat))) if flat.size else 0.0
    if peak == 0.0 or not math.isfinite(peak):
        return np.zeros(flat.shape, dtype=np.int8), peak
    scale = peak / Q8_MAX
    q = np.clip(np.rint(flat / np.float32(scale)), -Q8_MAX, Q8_MAX).astype(np.int8)
    return q, scale


def check_scales(scales: object, dtypes: Sequence[object]) -> None:
    """Raise ``bad-header`` unless ``scales`` is a list with one entry per tensor: nil, or a
    finite float ``>= 0`` for a float32 tensor."""
    if not isinstance(scales, list) or len(scales) != len(dtypes):
        raise CodecError("bad-header", "q8 must be a list with one entry per tensor")
    for scale, dtype in zip(scales, dtypes):
        if scale is None:
            continue
        if not isinstance(scale, float) or not math.isfinite(scale) or scale < 0 or dtype != "<f4":
            raise CodecError("bad-header", f"q8 scale {scale!r} of a {dtype} tensor")


def dequantize_q8(name: str, q: np.ndarray, scale: float) -> np.ndarray:
    """The float32 tensor that ``q`` (int8) and ``scale`` stand for; ``bad-header`` for -128."""
    if np.any(q == -Q8_MAX - 1):
        raise CodecError("bad-header", f"quantised tensor {name!r} holds -128")
    return q.astype(np.float32) * np.float32(scale)
