"""Differential privacy per hospital: the plan, the budget ledger and one private round.

A hospital's records are protected by DP-SGD (Opacus, ``swarm.dp_sgd``): every step draws a Poisson sample
of the records, clips each record's gradient to ``max_grad_norm`` and adds Gaussian noise
of ``noise * max_grad_norm``. :func:`plan` picks the noise so that every planned round
(``rounds`` x ``local_epochs`` passes) fits the hospital's budget ``(epsilon, delta)`` under
the PRV accountant (RDP as an option). The :class:`PrivacyLedger` holds what was spent:
one entry per trained round, part of the peer's checkpoint, so a restarted peer neither
forgets nor recounts a round. :class:`PrivateTraining` is the peer's training callable: it
refuses to train a round that would exceed the budget and then offers its current (mixed)
weights unchanged, which costs nothing (post-processing of what was already released).

All randomness of a private round (which records are sampled, the noise) comes from the
ledger's secret key, never from the swarm's shared seed: a neighbour who knows the seed
must not be able to subtract the noise or know the batches. A round retrained from the
same weights with the same key gives the same release, so a crash after the charge and
before the checkpoint costs the round once (:meth:`PrivacyLedger.charge`).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import math
import secrets
import threading
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from swarm.errors import ConfigError

if TYPE_CHECKING:
    from swarm.datasets import ArrayDataset
    from swarm.training import Trainer, TrainResult

log = logging.getLogger("medswarm.privacy")

ACCOUNTANTS = ("prv", "rdp")
#: the default delta is 1 / (DELTA_SCALE x the hospital's training records)
DELTA_SCALE = 10


def require_opacus() -> None:
    """ConfigError naming the extra when Opacus is not installed."""
    if importlib.util.find_spec("opacus") is None:
        raise ConfigError("dp_epsilon", "needs opacus: pip install 'medswarm[dp]'")


@dataclass(frozen=True)
class PrivacyConfig:
    """One hospital's privacy settings (``--dp-*``).

    Attributes
    ----------
    epsilon: the total budget of the run (``--dp-epsilon``).
    delta: ``--dp-delta``; ``None``: 1 / (10 x the hospital's training records).
    max_grad_norm: per-record gradient clipping bound C.
    noise: noise multiplier (std / C); ``None``: the smallest that fits the planned rounds.
    accountant: ``prv`` (default) or ``rdp``.
    """

    epsilon: float
    delta: float | None = None
    max_grad_norm: float = 1.0
    noise: float | None = None
    accountant: str = "prv"

    def __post_init__(self) -> None:
        if not (self.epsilon > 0 and math.isfinite(self.epsilon)):
            raise ConfigError("dp_epsilon", f"must be a finite number > 0, got {self.epsilon}")
        if self.delta is not None and not 0 < self.delta < 1:
            raise ConfigError("dp_delta", f"must be in (0, 1), got {self.delta}")
        if not (self.max_grad_norm > 0 and math.isfinite(self.max_grad_norm)):
            raise ConfigError("dp_max_grad_norm", f"must be a finite number > 0, got {self.max_grad_norm}")
        if self.noise is not None and not (self.noise > 0 and math.isfinite(self.noise)):
            raise ConfigError("dp_noise", f"must be a finite number > 0, got {self.noise}")
        if self.accountant not in ACCOUNTANTS:
            raise ConfigError("dp_accountant", f"expected prv or rdp, got {self.accountant!r}")
        require_opacus()


@dataclass(frozen=True)
class DPPlan:
    """How one hospital trains privately: the cost of one round and the budget."""

    epsilon: float
    delta: float
    noise: float
    sample_rate: float
    steps_per_round: int
    max_grad_norm: float
    accountant: str
    #: steps the noise was chosen for (None with ``--dp-noise``: no such promise)
    planned_steps: int | None


def default_delta(records: int) -> float:
    """1 / (10 N): below 1/N, so that no single record may be given away outright."""
    return 1.0 / (DELTA_SCALE * max(1, records))


def plan(privacy: PrivacyConfig, records: int, batch_size: int, local_epochs: int, rounds: int) -> DPPlan:
    """The private training of a hospital with ``records`` training records.

    Poisson sampling at rate q = 1 / ceil(N / batch_size) (one expected pass per
    ``ceil(N / batch_size)`` steps, as Opacus's loader); the noise fits
    ``rounds * local_epochs`` passes into the budget unless given.

    Raises
    ------
    ConfigError
        (field ``dp_epsilon``) if no noise multiplier fits the budget.
    """
    steps_per_epoch = max(1, math.ceil(records / batch_size))
    q = 1.0 / steps_per_epoch
    steps_per_round = local_epochs * steps_per_epoch
    delta = privacy.delta if privacy.delta is not None else default_delta(records)
    planned = None
    noise = privacy.noise
    if noise is None:
        planned = rounds * steps_per_round
        noise = noise_for(privacy.epsilon, delta, q, planned, privacy.accountant)
    return DPPlan(privacy.epsilon, delta, noise, q, steps_per_round, privacy.max_grad_norm,
                  privacy.accountant, planned)


@lru_cache(maxsize=1024)
def noise_for(epsilon: float, delta: float, sample_rate: float, steps: int, accountant: str) -> float:
    """The smallest noise multiplier whose ``steps`` steps stay within ``(epsilon, delta)``."""
    from opacus.accountants.utils import get_noise_multiplier

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float(get_noise_multiplier(target_epsilon=epsilon, target_delta=delta, sample_rate=sample_rate,
                                              steps=steps, accountant=accountant))
    except ValueError as exc:
        raise ConfigError("dp_epsilon", f"no noise fits epsilon {epsilon:g} at delta {delta:.2g}: {exc}") from None


History = tuple[tuple[float, float, int], ...]


@lru_cache(maxsize=65536)
def epsilon_of(history: History, delta: float, accountant: str) -> float:
    """The epsilon spent by ``history`` ((noise, sample rate, steps) entries) at ``delta``."""
    if not history:
        return 0.0
    from opacus.accountants import PRVAccountant, RDPAccountant

    acc = PRVAccountant() if accountant == "prv" else RDPAccountant()
    acc.history = [tuple(h) for h in history]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(acc.get_epsilon(delta=delta))


class PrivacyLedger:
    """What one hospital has spent: one entry per charged round, and the secret key.

    ``entries`` maps a round's tag to ``[noise, sample_rate, steps, start]`` where ``start``
    is a digest of the weights the round trained from. The state (:meth:`state`) is
    msgpack-able and goes into every checkpoint; :meth:`merge` of two states is their union,
    so merging a checkpoint's and a journal's copy never counts a round twice.
    """

    def __init__(self, plan_: DPPlan, key: bytes | None = None,
                 entries: Mapping[str, list] | None = None) -> None:
        self.plan = plan_
        self.key = key if key is not None else secrets.token_bytes(16)
        self.entries: dict[str, list] = {k: list(v) for k, v in (entries or {}).items()}
        #: a real peer charges in its training thread while its event loop checkpoints
        self._lock = threading.Lock()

    def history(self, extra: tuple[float, float, int] | None = None) -> History:
        """The accountant's history: runs of equal (noise, rate) merged, in charge order."""
        out: list[list] = []
        with self._lock:
            items = [tuple(v[:3]) for v in self.entries.values()] + ([extra] if extra else [])
        for noise, q, steps in items:
            if out and out[-1][0] == noise and out[-1][1] == q:
                out[-1][2] += int(steps)
            else:
                out.append([float(noise), float(q), int(steps)])
        return tuple(tuple(h) for h in out)  # type: ignore[misc]

    def spent(self) -> float:
        """Epsilon spent so far at the plan's delta."""
        return epsilon_of(self.history(), self.plan.delta, self.plan.accountant)

    def cost(self) -> tuple[float, float, int]:
        """One round's (noise, sample rate, steps)."""
        return (self.plan.noise, self.plan.sample_rate, self.plan.steps_per_round)

    def affordable(self) -> bool:
        """Whether one more round stays within the budget."""
        after = self.history(self.cost())
        if self.plan.planned_steps is not None and len(after) == 1 and after[0][:2] == self.cost()[:2] \
                and after[0][2] <= self.plan.planned_steps:
            return True  # the noise was chosen so that the planned steps fit
        return epsilon_of(after, self.plan.delta, self.plan.accountant) <= self.plan.epsilon

    def charge(self, tag: str, start: str) -> bool:
        """Record the round ``tag`` trained from weights of digest ``start``.

        Returns False (nothing charged) if the same round was already charged from the
        same weights: the retrain is the same release. Another start charges again.
        """
        with self._lock:
            key, n = tag, 1
            while key in self.entries:
                if self.entries[key][3] == start:
                    return False
                n += 1
                key = f"{tag}#{n}"
            self.entries[key] = [*self.cost(), start]
            return True

    def rng(self, tag: str) -> torch.Generator:
        """The secret generator of round ``tag`` (sampling and noise)."""
        seed = int.from_bytes(hashlib.blake2b(tag.encode(), key=self.key, digest_size=8).digest(), "big")
        return torch.Generator().manual_seed(seed & (2**63 - 1))

    def state(self) -> dict[str, Any]:
        """The ledger as msgpack-able data (the checkpoint's ``extra["dp"]``)."""
        with self._lock:
            return {"key": self.key.hex(), "entries": {k: list(v) for k, v in self.entries.items()}}

    def merge(self, state: Mapping[str, Any] | None) -> None:
        """Add the entries of a saved state (a checkpoint's or a journal's); adopt its key."""
        if not state:
            return
        with self._lock:
            self.key = bytes.fromhex(state["key"])
            for tag, entry in state["entries"].items():
                self.entries.setdefault(tag, list(entry))


class LedgerJournal:
    """The write-ahead copy of a peer's ledger (``STATE_DIR/dp-ledger.json``), written
    atomically before a round's training starts, so a crash between the charge and the
    round's checkpoint cannot lose a round that may have been released."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def load(self) -> dict[str, Any] | None:
        """The saved ledger state, or None if there is none.

        Raises
        ------
        ConfigError
            (field ``state_dir``) if the file exists but cannot be read: a peer must not
            start with a ledger that may forget spent rounds.
        """
        if not self.path.exists():
            return None
        try:
            state = json.loads(self.path.read_text())
            bytes.fromhex(state["key"])
            if not isinstance(state["entries"], dict):
                raise TypeError("entries")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError("state_dir", f"{self.path}: unreadable privacy ledger ({exc})") from None
        return state

    def save(self, state: Mapping[str, Any]) -> None:
        """Replace the journal by ``state`` atomically and durably."""
        from swarm.atomic_file import atomic_write

        atomic_write(self.path, json.dumps(state, sort_keys=True))


def weights_digest(weights: Mapping[str, np.ndarray]) -> str:
    """A short digest of a model's weights (the start of a round)."""
    h = hashlib.blake2b(digest_size=12)
    for name, arr in weights.items():
        h.update(name.encode())
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


class PrivateTraining:
    """One hospital's training callable under DP: ``(weights, data, seed) -> TrainResult``.

    Charges the ledger before each round (then ``journal`` persists it, before anything is
    released), trains with :meth:`Trainer.train_private`, and once the next round would
    exceed the budget returns the weights unchanged (``exhausted`` says from which round tag).
    The result's loss is NaN: the training loss is a figure of the records, outside the
    guarantee, so it must not travel in progress records (``last_loss`` keeps it locally).
    """

    def __init__(self, trainer: Trainer, ledger: PrivacyLedger, *, peer: str = "",
                 journal: Callable[[dict[str, Any]], None] | None = None, track: bool = True) -> None:
        self.trainer, self.ledger, self.peer, self.journal = trainer, ledger, peer, journal
        #: compute the spent epsilon after every round (the per-round log, /status); the
        #: simulation asks only at the end (an accountant call costs ~0.3 s)
        self.track = track
        self.exhausted: str | None = None
        self.last_loss = math.nan
        self.last_spent = ledger.spent() if ledger.entries else 0.0

    def __call__(self, weights: Mapping[str, np.ndarray], data: ArrayDataset, seed: int) -> TrainResult:
        """Train one private round, or return ``weights`` unchanged once the budget is spent."""
        from swarm.training import TrainResult

        tag = str(seed)
        if not self.ledger.affordable():
            if self.exhausted is None:
                self.exhausted = tag
                log.warning("event=dp-budget-exhausted peer=%s spent=%.4g budget=%g detail=no further "
                            "training; mixing and serving continue", self.peer, self.last_spent,
                            self.ledger.plan.epsilon)
            return TrainResult({k: np.array(v, copy=True) for k, v in weights.items()}, math.nan, len(data))
        if self.ledger.charge(tag, weights_digest(weights)) and self.journal is not None:
            self.journal(self.ledger.state())
        if self.track:
            self.last_spent = self.ledger.spent()
        log.info("event=dp-round peer=%s tag=%s epsilon_spent=%.4g budget=%g delta=%.3g", self.peer, tag,
                 self.last_spent, self.ledger.plan.epsilon, self.ledger.plan.delta)
        result = self.trainer.train_private(weights, data, self.ledger.plan, self.ledger.rng(tag))
        self.last_loss = result.loss  # kept here: the loss of the records is not released
        return TrainResult(result.weights, math.nan, result.samples)

    def restore(self, *states: Mapping[str, Any] | None) -> None:
        """Start over from saved ledger states (a checkpoint's, the journal's): their union."""
        self.ledger.entries = {}
        for state in states:
            self.ledger.merge(state)
        self.exhausted = None
        self.last_spent = self.ledger.spent()

    def summary(self) -> dict[str, Any]:
        """What the report, ``/status`` and ``/metrics`` show."""
        if not self.track:
            self.last_spent = self.ledger.spent()
        p = self.ledger.plan
        return {"dp_epsilon_budget": p.epsilon, "dp_epsilon_spent": self.last_spent, "dp_delta": p.delta,
                "dp_noise_multiplier": p.noise, "dp_sample_rate": p.sample_rate, "dp_accountant": p.accountant,
                "dp_rounds_charged": len(self.ledger.entries), "dp_budget_exhausted": self.exhausted is not None}


def spent_of(train_fn: object) -> float | None:
    """The epsilon spent by a node's training callable, or None without DP."""
    if isinstance(train_fn, PrivateTraining) and train_fn.track:
        return train_fn.last_spent
    return None
