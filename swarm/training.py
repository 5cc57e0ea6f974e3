"""Local training and evaluation behind two plain callables.

``train_local(weights, data, cfg, seed)`` and ``evaluate(weights, data)`` are what every
arm of the simulation and every real peer call; tests can swap in a fake trainer. A
``Trainer`` owns one torch module and reuses it for every peer it serves, loading weights
in and out as numpy arrays, so the rest of medswarm never touches torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from swarm.datasets import ArrayDataset
from swarm.errors import ConfigError
from swarm.metrics import accuracy, auroc
from swarm.models import build_model, get_weights, model_id, set_weights
from swarm.weights import Weights


@dataclass(frozen=True)
class TrainConfig:
    """How a peer trains in one round.

    Attributes
    ----------
    local_epochs: passes over the local training set per round.
    batch_size: minibatch size.
    lr: learning rate.
    optimizer: ``"sgd"`` (momentum 0.9) or ``"adam"``; a fresh optimizer each round,
        as in FedAvg, so no optimizer state has to travel or be averaged.
    weight_decay: L2 penalty.
    clip_norm: largest gradient norm per step (clipped above it).
    """

    local_epochs: int = 1
    batch_size: int = 32
    lr: float = 0.05
    optimizer: str = "sgd"
    weight_decay: float = 0.0
    clip_norm: float = 5.0

    def __post_init__(self) -> None:
        if self.local_epochs < 1:
            raise ConfigError("local_epochs", f"must be >= 1, got {self.local_epochs}")
        if self.batch_size < 1:
            raise ConfigError("batch_size", f"must be >= 1, got {self.batch_size}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError("lr", f"must be a positive number, got {self.lr}")
        if self.optimizer not in ("sgd", "adam"):
            raise ConfigError("optimizer", f"expected sgd or adam, got {self.optimizer!r}")


@dataclass(frozen=True)
class TrainResult:
    """Weights after local training, the mean training loss, and the samples seen per epoch."""

    weights: dict[str, np.ndarray]
    loss: float
    samples: int


@dataclass(frozen=True)
class Metrics:
    """Loss, accuracy and AUROC of a model on one dataset (NaN where undefined)."""

    loss: float
    accuracy: float
    auroc: float


class Trainer:
    """Trains and evaluates one architecture for any number of peers.

    Parameters
    ----------
    input_shape, num_classes:
        Taken from the data; they choose the model (CNN for images, MLP for features).
    config:
        The per-round training settings.
    """

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, config: TrainConfig) -> None:
        self.config = config
        self.num_classes = num_classes
        self._model = build_model(input_shape, num_classes)
        # a second instance for evaluation: a real peer trains in a worker thread while its
        # event loop evaluates mixed models, and the two must never share parameters
        self._eval_model = build_model(input_shape, num_classes)
        self.model_id = model_id(self._model)
        self._loss = nn.CrossEntropyLoss()

    def initial_weights(self, seed: int) -> dict[str, np.ndarray]:
        """Seeded initial weights; every peer of a run starts from the same ones."""
        torch.manual_seed(seed)
        for module in self._model.modules():
            if hasattr(module, "reset_parameters") and module is not self._model:
                module.reset_parameters()
        return get_weights(self._model)

    def train(self, weights: Weights, data: ArrayDataset, seed: int) -> TrainResult:
        """Train from ``weights`` on ``data`` for ``local_epochs``; deterministic for a seed."""
        model, cfg = self._model, self.config
        set_weights(model, weights)
        model.train()
        if cfg.optimizer == "sgd":
            opt: torch.optim.Optimizer = torch.optim.SGD(
                model.parameters(), lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay
            )
        else:
            opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        x = torch.from_numpy(data.x)
        y = torch.from_numpy(data.y)
        gen = torch.Generator().manual_seed(seed)
        total, count = 0.0, 0
        for _ in range(cfg.local_epochs):
            order = torch.randperm(len(data), generator=gen)
            for start in range(0, len(data), cfg.batch_size):
                idx = order[start : start + cfg.batch_size]
                opt.zero_grad(set_to_none=True)
                loss = self._loss(model(x[idx]), y[idx])
                loss.backward()
                # clipping keeps plain SGD with momentum stable on large pooled sets
                # (the central arm takes hundreds of steps per round)
                nn.utils.clip_grad_norm_(model.parameters(), self.config.clip_norm)
                opt.step()
                total += float(loss.detach()) * len(idx)
                count += len(idx)
        return TrainResult(get_weights(model), total / max(count, 1), len(data))

    def predict(self, weights: Weights, data: ArrayDataset) -> np.ndarray:
        """Class probabilities ``(N, K)`` of the model with ``weights`` on ``data``."""
        model = self._eval_model
        set_weights(model, weights)
        model.eval()
        with torch.no_grad():
            logits = model(torch.from_numpy(data.x))
        return torch.softmax(logits, dim=1).numpy()

    def evaluate(self, weights: Weights, data: ArrayDataset) -> Metrics:
        """Loss, accuracy and AUROC of ``weights`` on ``data``."""
        if len(data) == 0:
            return Metrics(math.nan, math.nan, math.nan)
        probs = self.predict(weights, data)
        picked = probs[np.arange(len(data)), data.y]
        loss = float(-np.mean(np.log(np.clip(picked, 1e-12, None))))
        return Metrics(loss, accuracy(data.y, probs), auroc(data.y, probs))
