"""A custom task: its own model class and its own training loop, on a CSV image folder.

Use it with ``--task examples/tiny_task.py:task`` in ``medswarm simulate``, ``peer`` or
``launch``. The data comes through medswarm's own CSV loader (``load_builtin_data``), so
``--data labels.csv --partition sites --image-size N`` work as usual; the model and the
training are this file's.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from swarm.datasets import ArrayDataset
from swarm.models import ModelSpec
from swarm.task import Task, load_builtin_data
from swarm.training import TrainConfig


class TinyNet(nn.Module):
    """One convolution, global max pooling, one linear layer: finds a bright blob anywhere."""

    def __init__(self, channels: int, classes: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, 8, kernel_size=5, padding=2)
        self.head = nn.Linear(8, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.amax(torch.relu(self.conv(x)), dim=(2, 3)))


def build(spec: ModelSpec) -> nn.Module:
    """The model for the data's channels and classes (``--model`` is ignored: this task has one)."""
    return TinyNet(spec.input_shape[0], spec.num_classes)


def fit(model: nn.Module, data: ArrayDataset, config: TrainConfig, seed: int) -> float:
    """Adam with random horizontal flips; the flips and batch order come from ``seed`` alone."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    x, y = torch.from_numpy(data.x), torch.from_numpy(data.y)
    model.train()
    total = 0.0
    for _ in range(config.local_epochs):
        for idx in torch.randperm(len(data), generator=gen).split(config.batch_size):
            batch = x[idx]
            flip = torch.rand(len(idx), generator=gen) < 0.5
            batch = torch.where(flip[:, None, None, None], batch.flip(-1), batch)
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(batch), y[idx])
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
    return total / max(1, len(data) * config.local_epochs)


def loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """What DP-SGD minimises under ``--dp-epsilon`` (it cannot run ``fit``: it draws the batches,
    clips each image's gradient and adds noise itself); the flips stay in ``fit`` only."""
    return nn.functional.cross_entropy(model(x), y)


def sensitivity(labels: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """An extra metric: the share of lesions (class 1) found."""
    positives = labels == 1
    hits = probs.argmax(axis=1)[positives] == 1
    return {"sensitivity": float(hits.mean()) if positives.any() else float("nan")}


task = Task(name="tiny-blob-finder", load=load_builtin_data, model=build, fit=fit, metrics=sensitivity, loss=loss)
