"""A fast stand-in for torch training, so protocol tests can run hundreds of swarms.

Each site has a target vector; training moves the weights halfway to it plus seeded
noise. The "validation loss" is the distance to the mean of all targets, so mixing
helps, the loss falls, then plateaus, and convergence votes happen as on real data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from swarm.training import Metrics, TrainConfig


@dataclass
class FakeResult:
    weights: dict
    loss: float
    samples: int


@dataclass
class FakeData:
    site: int
    size: int

    def __len__(self) -> int:
        return self.size


@dataclass
class FakeSite:
    site_id: int
    name: str
    train: FakeData
    test: FakeData


@dataclass
class FakeFederation:
    sites: list
    global_test: FakeData
    name: str = "fake"
    num_classes: int = 2
    input_shape: tuple = (4,)
    central_train: FakeData = field(default_factory=lambda: FakeData(-1, 1))


class FakeTrainer:
    """Implements the parts of ``swarm.training.Trainer`` the swarm uses."""

    model_id = "fake-model"

    def __init__(self, n_sites: int, seed: int = 0, dim: int = 4) -> None:
        rng = np.random.default_rng(seed)
        self.targets = rng.normal(size=(n_sites, dim)).astype(np.float32)
        self.optimum = self.targets.mean(axis=0)
        self.config = TrainConfig()
        self.dim = dim

    def initial_weights(self, seed: int) -> dict:
        return {"w": np.zeros(self.dim, dtype=np.float32)}

    def train(self, weights, data: FakeData, seed: int) -> FakeResult:
        rng = np.random.default_rng(seed)
        w = weights["w"] + 0.5 * (self.targets[data.site] - weights["w"])
        w = w + rng.normal(scale=0.01, size=w.shape).astype(np.float32)
        loss = float(np.linalg.norm(w - self.targets[data.site]))
        return FakeResult({"w": w.astype(np.float32)}, loss, len(data))

    def evaluate(self, weights, data: FakeData) -> Metrics:
        loss = float(np.linalg.norm(weights["w"] - self.optimum))
        return Metrics(loss, math.nan, math.nan)


def fake_federation(n_sites: int, seed: int = 0) -> FakeFederation:
    rng = np.random.default_rng(seed)
    sizes = rng.integers(20, 200, n_sites)
    sites = [FakeSite(i, f"site-{i}", FakeData(i, int(sizes[i])), FakeData(i, 10)) for i in range(n_sites)]
    return FakeFederation(sites, FakeData(-1, 50))
