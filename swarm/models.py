"""The built-in models: a small CNN, an MLP, and MONAI's 2D networks by name.

Every model reads its input and output sizes from the data (``Federation.input_shape`` and
``num_classes``), never from constants, so any image folder or tabular set fits.
:func:`build_model` picks one from a :class:`ModelSpec` (``--model``, ``--norm``); MONAI is
imported only when one of its networks is asked for (``swarm.monai_models``).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from swarm.config import MODEL_NAMES, NORM_NAMES
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


@dataclass(frozen=True)
class ModelSpec:
    """What a task's model function is given: the data's shape and classes, and the user's choice.

    Attributes
    ----------
    input_shape: ``(C, H, W)`` for images, ``(F,)`` for feature vectors (from the data).
    num_classes: number of classes (from the data).
    arch: a name of :data:`MODEL_NAMES` (``--model``); a custom task may ignore it.
    norm: ``batch`` or ``group`` (``--norm``).
    """

    input_shape: tuple[int, ...]
    num_classes: int
    arch: str = "auto"
    norm: str = "batch"

    def __post_init__(self) -> None:
        if self.arch not in MODEL_NAMES:
            raise ConfigError("model", f"unknown model {self.arch!r}; expected one of {', '.join(MODEL_NAMES)}")
        if self.norm not in NORM_NAMES:
            raise ConfigError("norm", f"expected batch or group, got {self.norm!r}")


def build_model(input_shape: tuple[int, ...], num_classes: int, arch: str = "auto",
                norm: str = "batch") -> nn.Module:
    """Build the model ``arch`` for the data: by default a CNN for ``(C, H, W)``, an MLP for ``(F,)``.

    ``norm="group"`` replaces every ``BatchNorm`` layer with a ``GroupNorm`` (batch statistics
    leak individual samples and do not average well across sites).

    Raises
    ------
    ConfigError
        If the input shape does not fit the model (field ``model`` or ``input_shape``), or
        fewer than 2 classes.
    """
    spec = ModelSpec(tuple(input_shape), num_classes, arch, norm)
    if num_classes < 2:
        raise ConfigError("num_classes", f"need at least 2 classes, got {num_classes}")
    if len(input_shape) not in (1, 3):
        raise ConfigError("input_shape", f"expected (C, H, W) or (F,), got {input_shape}")
    if arch == "auto":
        arch = "small-cnn" if len(input_shape) == 3 else "mlp"
    if arch == "mlp":
        if len(input_shape) != 1:
            raise ConfigError("model", f"mlp takes feature vectors (F,), the data is {input_shape}")
        return MLP(input_shape[0], num_classes)
    if len(input_shape) != 3:
        raise ConfigError("model", f"{arch} takes images (C, H, W), the data is {input_shape}")
    if arch == "small-cnn":
        channels, height, width = input_shape
        if height < 4 or width < 4:
            raise ConfigError("input_shape", f"images too small for the CNN: {input_shape}")
        return SmallCNN(channels, num_classes, height, width)
    from swarm.monai_models import monai_model

    return group_norm(monai_model(spec)) if norm == "group" else monai_model(spec)


def builtin_model(spec: ModelSpec) -> nn.Module:
    """The built-in tasks' model function: :func:`build_model` of the spec."""
    return build_model(spec.input_shape, spec.num_classes, spec.arch, spec.norm)


def group_norm(model: nn.Module, groups: int = 8) -> nn.Module:
    """Replace every batch norm of ``model`` in place by a group norm; return ``model``.

    Each gets ``gcd(groups, channels)`` groups, so any channel count works; affine
    parameters are kept (fresh: 1 and 0).
    """
    for name, child in list(model.named_children()):
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            channels = child.num_features
            setattr(model, name, nn.GroupNorm(math.gcd(groups, channels), channels, eps=child.eps,
                                              affine=child.affine))
        else:
            group_norm(child, groups)
    return model


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
