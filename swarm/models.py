"""Small models sized for 28x28 medical images and for tabular records.

Both read their input and output sizes from the data (``Federation.input_shape`` and
``num_classes``), never from constants, so any MedMNIST file or tabular set fits.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch
from torch import nn

from swarm.errors import ConfigError
from swarm.weights import Weights


class SmallCNN(nn.Module):
    """Two conv blocks and a small head: about 100k parameters for 28x28 inputs.

    No batch normalisation: its running statistics do not average well across sites
    with different label mixes, and group-free models keep the averaging honest.
    """

    def __init__(self, channels: int, num_classes: int, height: int = 28, width: int = 28) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(channels, 16, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        flat = 32 * (height // 4) * (width // 4)
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(flat, 64), nn.ReLU(), nn.Linear(64, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return class logits for a batch of images ``(N, C, H, W)``."""
        return self.head(self.features(x))


class MLP(nn.Module):
    """A two-hidden-layer perceptron for standardised tabular features."""

    def __init__(self, features: int, num_classes: int, hidden: int = 32) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(features, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return class logits for a batch of feature vectors ``(N, F)``."""
        return self.net(x)


def build_model(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Pick the model that fits the data: a CNN for ``(C, H, W)``, an MLP for ``(F,)``.

    Raises
    ------
    ConfigError
        If the input shape is neither an image nor a feature vector, or fewer than 2 classes.
    """
    if num_classes < 2:
        raise ConfigError("num_classes", f"need at least 2 classes, got {num_classes}")
    if len(input_shape) == 3:
        channels, height, width = input_shape
        if height < 4 or width < 4:
            raise ConfigError("input_shape", f"images too small for the CNN: {input_shape}")
        return SmallCNN(channels, num_classes, height, width)
    if len(input_shape) == 1:
        return MLP(input_shape[0], num_classes)
    raise ConfigError("input_shape", f"expected (C, H, W) or (F,), got {input_shape}")


def model_id(model: nn.Module) -> str:
    """A short identifier of the architecture: class name plus every tensor's name and shape.

    Peers put it in each weights message so a model of another shape is refused early.
    """
    parts = [type(model).__name__] + [
        f"{name}:{'x'.join(map(str, t.shape))}" for name, t in model.state_dict().items()
    ]
    return f"{type(model).__name__}-" + hashlib.blake2b("|".join(parts).encode(), digest_size=6).hexdigest()


def get_weights(model: nn.Module) -> dict[str, np.ndarray]:
    """Copy a model's parameters out as named numpy arrays (in ``state_dict`` order)."""
    return {name: t.detach().cpu().numpy().copy() for name, t in model.state_dict().items()}


def set_weights(model: nn.Module, weights: Weights) -> None:
    """Load named numpy arrays into a model; names and shapes must match exactly."""
    state = {
        # decoded weights are read-only views of the message: torch needs its own copy then
        name: torch.from_numpy(arr if arr.flags.writeable and arr.flags.c_contiguous else np.array(arr))
        for name, arr in weights.items()
    }
    model.load_state_dict(state, strict=True)
