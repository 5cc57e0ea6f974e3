"""A model's weights in one contiguous float32 buffer, with a named view per tensor.

The simulation keeps one model per virtual peer. As a dict of separately allocated arrays,
every training, mix and catch-up allocates a fresh set and frees the old one, and each
tensor carries its own allocation; as one flat buffer per peer, those results are copied
into the same memory, so a peer's weights cost their bytes and no more, at a fixed place.
Tensors that are not float32 (a batch norm's int64 step counter) keep their own small array.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np


class FlatWeights:
    """Named float32 views into one buffer (``views``), refilled in place by :meth:`assign`."""

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

    def fits(self, weights: Mapping[str, np.ndarray]) -> bool:
        """Whether ``weights`` has these names, shapes and dtypes (so it can be copied in)."""
        if len(weights) != len(self.views):
            return False
        for name, view in self.views.items():
            arr = weights.get(name)
            if arr is None or np.shape(arr) != view.shape or np.asarray(arr).dtype != view.dtype:
                return False
        return True

    def assign(self, weights: Mapping[str, np.ndarray]) -> None:
        """Copy ``weights`` in (they must :meth:`fit`); the views keep their identity."""
        for name, view in self.views.items():
            src = weights[name]
            if src is not view:
                np.copyto(view, src)
