"""The in-memory representation of model weights shared by averaging, codec and training."""

from __future__ import annotations

import hashlib
from typing import Iterable, Mapping

import numpy as np

#: Named tensors in a fixed order (a model's ``state_dict`` as numpy arrays).
Weights = Mapping[str, np.ndarray]


def weights_digest(models: Iterable[Weights]) -> str:
    """SHA-256 over every model's names and tensors in order: equal digests, bit-identical models
    (how a run with ``--ray`` is checked against the same run without)."""
    h = hashlib.sha256()
    for weights in models:
        for name, arr in weights.items():
            h.update(name.encode())
            h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()
