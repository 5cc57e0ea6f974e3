"""A model's weights in one contiguous float32 buffer, with a named view per tensor.

The simulation keeps one model per virtual peer. As one flat buffer, a peer's model is one
allocation of exactly its bytes instead of one per tensor, and whole-model operations
(hashing, shipping to a Ray worker) see one contiguous vector. Each new model gets a new
buffer (the old one is freed when nothing refers to it), so a dict of views handed out
earlier keeps its values: assigning a node's weights means what it meant with plain dicts.
Tensors that are not float32 (a batch norm's int64 step counter) keep their own small array.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np


class FlatWeights:
    """A copy of ``weights``: float32 tensors as named views (``views``) into one ``buffer``."""

    def __init__(self, weights: Mapping[str, np.ndarray]) -> None:
        floats = [np.asarray(a) for a in weights.values() if np.asarray(a).dtype == np.float32]
        self.buffer = np.empty(sum(a.size for a in floats), dtype=np.float32)
        self.views: dict[str, np.ndarray] = {}
        offset = 0
        for name, value in weights.items():
            arr = np.asarray(value)
            if arr.dtype == np.float32:
                view = self.buffer[offset:offset + arr.size].reshape(arr.shape)
                offset += arr.size
                view[...] = arr
            else:
                view = np.array(arr, copy=True)
            self.views[name] = view
