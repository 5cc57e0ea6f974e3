"""Where the simulation's local trainings run: in this process, or on a Ray cluster.

The virtual clock submits a peer's training when the training starts and asks for its
result only when the training-done event pops off the event queue, so trainings that
overlap in virtual time can run in parallel (``swarm.ray_pool``). A training is a pure
function of (weights, site data, seed) with one torch thread, so every pool gives the
same result and a run is the same with or without Ray for the same seed.
"""

from __future__ import annotations

import time
from typing import Callable, Mapping, Protocol, Sequence

import numpy as np

from swarm.datasets import ArrayDataset
from swarm.node import SwarmNode, TrainResultLike

#: ``train(weights, data, seed)``: ``swarm.training.Trainer.train`` in practice
TrainCall = Callable[[Mapping[str, np.ndarray], ArrayDataset, int], TrainResultLike]


class TrainJob(Protocol):
    """A submitted training: ``result()`` waits for it; ``seconds`` is its compute time after that."""

    seconds: float

    def result(self) -> TrainResultLike:
        ...


class TrainPool(Protocol):
    """Runs trainings of the sites it was built with (site index -> training set)."""

    def submit(self, site: int, weights: Mapping[str, np.ndarray], seed: int) -> TrainJob:
        ...

    def close(self) -> None:
        ...

    def describe(self) -> dict:
        ...


class Deferred:
    """A training in this process, run when its result is first asked for."""

    def __init__(self, run: Callable[[], TrainResultLike]) -> None:
        self._run: Callable[[], TrainResultLike] | None = run
        self._value: TrainResultLike | None = None
        self.seconds = 0.0

    def result(self) -> TrainResultLike:
        if self._run is not None:
            start = time.perf_counter()
            self._value, self._run = self._run(), None
            self.seconds = time.perf_counter() - start
        assert self._value is not None
        return self._value


class LocalPool:
    """Trains in this process (the reference arms without Ray): each training runs when its
    result is asked for, so a round holds one result at a time. The weights given to
    ``submit`` must stay unchanged until then (the arms hand over models they replace, never
    modify)."""

    def __init__(self, train: TrainCall | Sequence[TrainCall], datasets: Sequence[ArrayDataset]) -> None:
        self.datasets = list(datasets)
        #: one training callable per site (a private one each under DP), or one for all
        self.trains = list(train) if isinstance(train, Sequence) else [train] * len(self.datasets)

    def submit(self, site: int, weights: Mapping[str, np.ndarray], seed: int) -> TrainJob:
        data, train = self.datasets[site], self.trains[site]
        return Deferred(lambda: train(weights, data, seed))

    def close(self) -> None:
        pass

    def describe(self) -> dict:
        return {"backend": "local"}


class PendingTraining:
    """A peer's training submitted to a pool, as the training-done event carries it."""

    def __init__(self, node: SwarmNode, job: TrainJob) -> None:
        self.node, self.job = node, job

    def collect(self) -> TrainResultLike:
        """Wait for the result; the compute time counts as the node's training time."""
        value = self.job.result()
        self.node.stats.train_s += self.job.seconds
        return value


def make_pool(ray_address: str | None, trainer: object, datasets: Sequence[ArrayDataset]) -> TrainPool | None:
    """The pool of a run: ``None`` (train inline) without ``--ray``, else a ``RayPool``.

    Raises ``ConfigError`` (field ``ray``) if Ray is not installed or cannot be reached.
    """
    if ray_address is None:
        return None
    from swarm.ray_pool import RayPool

    return RayPool(ray_address, trainer, datasets)
