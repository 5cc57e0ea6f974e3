"""Local training and evaluation behind two plain callables.

``Trainer.train(weights, data, seed)`` and ``Trainer.evaluate(weights, data)`` are what every
arm of the simulation and every real peer call; tests can swap in a fake trainer. A
``Trainer`` owns one torch module and reuses it for every peer it serves, loading weights
in and out as numpy arrays, so the rest of medswarm never touches torch.

What the module is and how one round trains it come from a task (``swarm.task``): its
model function, its ``fit`` (by default :func:`supervised_fit`, plain minibatch training
with cross-entropy), its ``predict`` (by default :func:`softmax_predict`) and optional
extra metrics.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from swarm.datasets import ArrayDataset
from swarm.errors import ConfigError
from swarm.metrics import accuracy, auroc
from swarm.models import ModelSpec, get_weights, model_id, set_weights
from swarm.weights import Weights

if TYPE_CHECKING:
    from swarm.privacy import DPPlan
    from swarm.task import Task


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
    """Loss, accuracy and AUROC of a model on one dataset (NaN where undefined), plus any
    ``extra`` figures the task reports (name -> value)."""

    loss: float
    accuracy: float
    auroc: float
    extra: Mapping[str, float] = field(default_factory=dict)


#: ``fit(model, data, config, seed) -> mean training loss``: one round of local training, in place
FitFn = Callable[[nn.Module, ArrayDataset, TrainConfig, int], float]
#: ``predict(model, data) -> (N, K) class probabilities``
PredictFn = Callable[[nn.Module, ArrayDataset], np.ndarray]
#: ``metrics(labels, probabilities) -> {name: value}``: a task's extra figures
MetricsFn = Callable[[np.ndarray, np.ndarray], Mapping[str, float]]


def supervised_fit(model: nn.Module, data: ArrayDataset, cfg: TrainConfig, seed: int) -> float:
    """Train ``model`` in place for ``cfg.local_epochs`` with cross-entropy; return the mean loss.

    A fresh optimizer each round (SGD with momentum 0.9, or Adam), as in FedAvg, so no
    optimizer state has to travel; gradients clipped to ``cfg.clip_norm``; the batch order is
    drawn from ``seed`` alone, so a round is deterministic.
    """
    model.train()
    if cfg.optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(
            model.parameters(), lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay
        )
    else:
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    x = torch.from_numpy(data.x)
    y = torch.from_numpy(data.y)
    gen = torch.Generator().manual_seed(seed)
    total, count = 0.0, 0
    for _ in range(cfg.local_epochs):
        order = torch.randperm(len(data), generator=gen)
        for start in range(0, len(data), cfg.batch_size):
            idx = order[start : start + cfg.batch_size]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x[idx]), y[idx])
            loss.backward()
            # clipping keeps plain SGD with momentum stable on large pooled sets
            # (the central arm takes hundreds of steps per round)
            nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_norm)
            opt.step()
            total += float(loss.detach()) * len(idx)
            count += len(idx)
    return total / max(count, 1)


def softmax_predict(model: nn.Module, data: ArrayDataset) -> np.ndarray:
    """Class probabilities ``(N, K)``: the softmax of ``model``'s logits in eval mode."""
    model.eval()
    with torch.no_grad():
        logits = model(torch.from_numpy(data.x))
    return torch.softmax(logits, dim=1).numpy()


class Trainer:
    """Trains and evaluates one architecture for any number of peers.

    Parameters
    ----------
    input_shape, num_classes:
        Taken from the data; with ``arch`` and ``norm`` they make the task's :class:`ModelSpec`.
    config:
        The per-round training settings.
    task:
        What is trained and how (``swarm.task.Task``); by default the built-in task
        (:func:`swarm.models.build_model`, :func:`supervised_fit`, :func:`softmax_predict`).
    private:
        Train with DP-SGD (:meth:`train_private`): the task's model is made private
        (``swarm.dp_sgd.private_model``: batch norms become group norms), and its ``fit``
        must be the default or come with a ``loss`` (``swarm.task.check_private``).

    Raises
    ------
    ConfigError
        If the task's model function fails or does not return a torch module (field ``task``),
        or, with ``private``, if the model or the task cannot be trained privately.
    """

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, config: TrainConfig, *,
                 task: Task | None = None, arch: str = "auto", norm: str = "batch", private: bool = False) -> None:
        from swarm.task import builtin_task, check_private

        self.task = task if task is not None else builtin_task()
        self.config = config
        self.num_classes = num_classes
        self.private = private
        if private:
            check_private(self.task)
        self.spec = ModelSpec(tuple(input_shape), num_classes, arch, norm)
        self._grad_sample: nn.Module | None = None
        self._model = self._build()
        # a second instance for evaluation: a real peer trains in a worker thread while its
        # event loop evaluates mixed models, and the two must never share parameters
        self._eval_model = self._build()
        self.model_id = model_id(self._model)

    def _build(self) -> nn.Module:
        from swarm.task import build_task_model

        model = build_task_model(self.task, self.spec)
        if self.private:
            from swarm.dp_sgd import private_model

            private_model(model, self.task.name)
        return model

    def initial_weights(self, seed: int) -> dict[str, np.ndarray]:
        """Seeded initial weights: the task's model built under ``torch.manual_seed(seed)``;
        every peer of a run starts from the same ones."""
        torch.manual_seed(seed)
        return get_weights(self._build())

    def train(self, weights: Weights, data: ArrayDataset, seed: int) -> TrainResult:
        """Train from ``weights`` on ``data`` with the task's ``fit``; deterministic for a seed."""
        set_weights(self._model, weights)
        loss = self.task.fit(self._model, data, self.config, seed)
        return TrainResult(get_weights(self._model), float(loss), len(data))

    def train_private(self, weights: Weights, data: ArrayDataset, plan: DPPlan,
                      generator: torch.Generator) -> TrainResult:
        """One DP-SGD round from ``weights`` (``swarm.dp_sgd.dp_fit``) with the task's ``loss``
        (cross-entropy by default); every random draw comes from ``generator``."""
        from opacus import GradSampleModule

        from swarm.dp_sgd import cross_entropy, dp_fit

        set_weights(self._model, weights)
        if self._grad_sample is None:  # hooks on the training model, added once
            self._grad_sample = GradSampleModule(self._model, loss_reduction="mean")
        loss_fn = self.task.loss or cross_entropy
        params = [p for p in self._model.parameters() if p.requires_grad]
        loss = dp_fit(self._grad_sample, params, data, self.config, plan, loss_fn, generator)
        return TrainResult(get_weights(self._model), float(loss), len(data))

    def predict(self, weights: Weights, data: ArrayDataset) -> np.ndarray:
        """Class probabilities ``(N, K)`` of the model with ``weights`` on ``data``."""
        set_weights(self._eval_model, weights)
        return self.task.predict(self._eval_model, data)

    def evaluate(self, weights: Weights, data: ArrayDataset) -> Metrics:
        """Loss, accuracy and AUROC of ``weights`` on ``data``, plus the task's extra metrics."""
        if len(data) == 0:
            return Metrics(math.nan, math.nan, math.nan)
        probs = self.predict(weights, data)
        picked = probs[np.arange(len(data)), data.y]
        loss = float(-np.mean(np.log(np.clip(picked, 1e-12, None))))
        extra = dict(self.task.metrics(data.y, probs)) if self.task.metrics is not None else {}
        return Metrics(loss, accuracy(data.y, probs), auroc(data.y, probs), extra)
