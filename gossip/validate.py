"""Checks a decoded weights message must pass before its numbers touch a local model.

No peer trusts a neighbour's numbers blindly: the model id, tensor names, shapes and
dtypes must match the local model, every value must be finite, the values must stay
within a magnitude bound, the model's norm within a factor of the receiver's own (a scaled
model is refused even when its values are small), and its direction close to the receiver's
own (a sign-flipped or noise-swamped model is refused although its norm is right). A
failure raises ``RejectedMessage`` naming the sender.
"""

from __future__ import annotations

from typing import Mapping

import math

import numpy as np

from gossip.codec import WeightsMessage
from gossip.errors import RejectedMessage


def validate_weights(
    msg: WeightsMessage,
    *,
    link_peer: str,
    model_id: str,
    reference: Mapping[str, np.ndarray],
    max_abs: float = 1e4,
    max_norm_ratio: float | None = None,
    min_cosine: float | None = None,
) -> None:
    """Raise ``RejectedMessage`` unless ``msg`` can be mixed into a model like ``reference``.

    Parameters
    ----------
    link_peer:
        The authenticated id of the link the bytes came over; the message's own
        ``sender`` field must equal it (a peer cannot speak for another).
    model_id:
        The local architecture id; a different one is refused.
    reference:
        The local weights: names, shapes and dtypes must match exactly.
    max_abs:
        Largest absolute value accepted in any tensor; bigger means a broken or hostile peer.
    max_norm_ratio:
        If given, the norm of the message's floating-point tensors, taken as one vector,
        must be within this factor of ``reference``'s: above ``ratio * own`` or below
        ``own / ratio`` is refused as ``norm-ratio`` (not checked while the own norm is 0).
    min_cosine:
        If given, the cosine between the message's floating-point tensors and
        ``reference``'s, taken as vectors, must be at least this; below is refused as
        ``direction``. Peers of a swarm start from the same seeded model and mix every
        round, so honest models point the same way (cosine above 0.98 on BreastMNIST,
        16 peers, through 20 rounds of label-skewed training); a sign-flipped model has
        cosine -1, and noise several times the weights' size well under 0.5. Under DP
        the honest cosine itself falls towards 0 (each hospital's independent noise), so
        the command line then checks the sign only (``--min-cosine`` 0). Not checked
        while either norm is 0.
    """
    if msg.sender != link_peer:
        raise RejectedMessage(link_peer, "sender-mismatch", f"message claims sender {msg.sender!r}")
    if msg.model_id != model_id:
        raise RejectedMessage(link_peer, "model-mismatch", f"{msg.model_id!r} != {model_id!r}")
    if msg.sample_count <= 0:
        raise RejectedMessage(link_peer, "no-samples", f"sample count {msg.sample_count}")
    if list(msg.tensors) != list(reference):
        missing = sorted(set(reference) - set(msg.tensors))
        extra = sorted(set(msg.tensors) - set(reference))
        raise RejectedMessage(link_peer, "tensor-names", f"missing {missing}, extra {extra}")
    for name, ref in reference.items():
        arr = msg.tensors[name]
        if arr.shape != ref.shape or arr.dtype != ref.dtype:
            raise RejectedMessage(
                link_peer,
                "tensor-shape",
                f"{name}: got {arr.dtype}{list(arr.shape)}, expected {ref.dtype}{list(ref.shape)}",
            )
        if arr.dtype.kind == "f":
            if not np.isfinite(arr).all():
                raise RejectedMessage(link_peer, "non-finite", f"{name} holds NaN or Inf")
        if arr.size and float(np.max(np.abs(arr))) > max_abs:
            raise RejectedMessage(link_peer, "out-of-range", f"{name} exceeds |x| <= {max_abs:g}")
    if max_norm_ratio is None and min_cosine is None:
        return
    own, got, dot = _norms_and_dot(reference, msg.tensors)
    if max_norm_ratio is not None and own > 0 and not own / max_norm_ratio <= got <= own * max_norm_ratio:
        raise RejectedMessage(link_peer, "norm-ratio",
                              f"norm {got:.4g} vs own {own:.4g}, beyond a factor {max_norm_ratio:g}")
    if min_cosine is not None and own > 0 and got > 0 and dot / (own * got) < min_cosine:
        raise RejectedMessage(link_peer, "direction",
                              f"cosine {dot / (own * got):.3g} with the own model, below {min_cosine:g}")


def _norms_and_dot(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray]) -> tuple[float, float, float]:
    """``(||a||, ||b||, a . b)`` over the floating-point tensors of ``a`` (names as in ``a``), in float64."""
    aa = bb = ab = 0.0
    for name, arr in a.items():
        if arr.dtype.kind == "f":
            x = np.asarray(arr, dtype=np.float64)
            y = np.asarray(b[name], dtype=np.float64)
            aa += float(np.square(x).sum())  # no BLAS (see robust.py)
            bb += float(np.square(y).sum())
            ab += float((x * y).sum())
    return math.sqrt(aa), math.sqrt(bb), ab
