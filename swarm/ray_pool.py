"""``medswarm simulate --ray [ADDRESS]``: the virtual peers' trainings as Ray tasks.

Only training leaves the process; the protocol stays one seeded event loop. The trainer
(model and task) and every site's training set are put into Ray's object store once; a
task gets the weights and the seed, trains with one torch thread and returns the new
weights, so its result is the one the same training gives in this process. Workers get
this process's ``swarm`` and ``gossip`` code as Ray ``py_modules``, so a cluster needs
only Python, torch and ray installed (``pip install 'medswarm[ray]'``).
"""

from __future__ import annotations

import logging
import socket
import time
import uuid
import warnings
from typing import Any, Mapping, Sequence

import numpy as np

from swarm.datasets import ArrayDataset
from swarm.errors import ConfigError
from swarm.training import TrainResult

#: ``--ray`` without an address: start a Ray instance on this host for the run
LOCAL = "local"

#: the trainer a worker process has unpacked: (run key, trainer)
_cached: dict[str, Any] = {}


def require_ray() -> Any:
    """The ``ray`` module, or ``ConfigError`` naming the extra that installs it."""
    try:
        import ray
    except ImportError:
        raise ConfigError("ray", "Ray is not installed; install the extra: pip install 'medswarm[ray]'") from None
    return ray


def _train_task(key: str, trainer_box: list, weights: Mapping[str, np.ndarray], data: ArrayDataset,
                seed: int) -> tuple[TrainResult, float, str]:
    """One training in a Ray worker (one torch thread, as in the simulating process);
    returns the result, its compute seconds and the node it ran on."""
    import ray
    import torch

    torch.set_num_threads(1)
    trainer = _cached.get(key)
    if trainer is None:
        _cached.clear()  # a worker serves one run at a time: drop an earlier run's trainer
        trainer = _cached[key] = ray.get(trainer_box[0])
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the object store's arrays are read-only
        result = trainer.train(weights, data, seed)
    return result, time.perf_counter() - start, ray.get_runtime_context().get_node_id()


def check_reachable(address: str, timeout: float = 10.0) -> None:
    """``ConfigError`` at once if nothing answers at a ``HOST:PORT`` or ``ray://HOST:PORT`` address
    (``auto`` and other forms are left to Ray)."""
    where = address.removeprefix("ray://")
    host, sep, port = where.rpartition(":")
    if not sep or not port.isdigit() or not host:
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as err:
        raise ConfigError("ray", f"nothing answers at {address!r} ({err.strerror or err}); is the Ray head "
                                 "running (ray start --head)?") from None


class RayJob:
    """A training running on the cluster; ``result()`` waits for it."""

    def __init__(self, pool: RayPool, ref: Any) -> None:
        self._pool, self._ref = pool, ref
        self.seconds = 0.0

    def result(self) -> TrainResult:
        value, self.seconds, node = self._pool._ray.get(self._ref)
        self._ref = None  # the object store may free it now
        self._pool.nodes[node] = self._pool.nodes.get(node, 0) + 1
        # own, writable copies: the object store's buffers are read-only and pinned while referenced
        return TrainResult({k: np.array(v) for k, v in value.weights.items()}, value.loss, value.samples)


class RayPool:
    """Submits the sites' trainings to Ray (``address``: ``local`` or a cluster's address).

    Raises
    ------
    ConfigError
        (field ``ray``) if Ray is not installed or the cluster cannot be reached.
    """

    def __init__(self, address: str, trainer: Any, datasets: Sequence[ArrayDataset]) -> None:
        ray = self._ray = require_ray()
        import gossip
        import swarm

        runtime_env = {"py_modules": [swarm, gossip], "excludes": ["assets/", "__pycache__/"],
                       "env_vars": {"OMP_NUM_THREADS": "1"}}
        options: dict[str, Any] = {"runtime_env": runtime_env, "log_to_driver": False,
                                   "logging_level": logging.WARNING}
        if address == LOCAL:
            options.update(address="local", include_dashboard=False)
        else:
            check_reachable(address)  # Ray itself retries an unreachable head for minutes
            options.update(address=address)
        start = time.perf_counter()
        try:
            ray.init(**options)
        except (ConnectionError, RuntimeError, ValueError, TimeoutError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ConfigError("ray", f"cannot start or reach Ray at {address!r}: {first}") from None
        self._remote = ray.remote(num_cpus=1)(_train_task)
        self._key = uuid.uuid4().hex
        self._trainer = [ray.put(trainer)]
        self._data = [ray.put(d) for d in datasets]
        self.address, self.submitted = address, 0
        self._last: tuple[Mapping[str, np.ndarray], Any] | None = None  # (weights, their object ref)
        #: trainings collected per Ray node id
        self.nodes: dict[str, int] = {}
        self._cpus = float(ray.cluster_resources().get("CPU", 0.0))
        #: seconds to connect (or start Ray) and upload the code, trainer and data
        self.connect_s = time.perf_counter() - start

    def submit(self, site: int, weights: Mapping[str, np.ndarray], seed: int) -> RayJob:
        """Start ``site``'s training from ``weights`` (copied now) with ``seed``.

        The same weights object submitted again (FedAvg's global model, to every site) is
        uploaded once: the arms replace models, they never change one in place.
        """
        self.submitted += 1
        if self._last is None or self._last[0] is not weights:
            self._last = (weights, self._ray.put(dict(weights)))
        return RayJob(self, self._remote.remote(self._key, self._trainer, self._last[1], self._data[site],
                                                int(seed)))

    def describe(self) -> dict:
        """For the report: where trainings ran (address, cluster CPUs, trainings per node)."""
        return {"backend": "ray", "address": self.address, "cluster_cpus": self._cpus, "connect_s": self.connect_s,
                "trainings": self.submitted, "trainings_per_node": sorted(self.nodes.values(), reverse=True)}

    def close(self) -> None:
        """Disconnect (and stop the Ray this pool started, with ``local``)."""
        self._last = None
        self._ray.shutdown()
