"""The in-memory representation of model weights shared by averaging, codec and training."""

from __future__ import annotations

from typing import Mapping

import numpy as np

#: Named tensors in a fixed order (a model's ``state_dict`` as numpy arrays).
Weights = Mapping[str, np.ndarray]
