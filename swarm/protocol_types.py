"""The vocabulary of the peer protocol: its config, the events fed in, the actions out, the stats.

Kept apart from the machines (``swarm.protocol`` and its parts) so that each part and its
tests can speak the same frozen messages without importing the composer.
``swarm.protocol`` re-exports every name here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

from gossip.control import ControlMessage
from swarm.convergence import ConvergenceConfig
from swarm.errors import ConfigError
from swarm.round_counter import DeadlineConfig


@dataclass(frozen=True)
class ProtocolConfig:
    """Settings of the round counter, gossip and convergence (seconds for times)."""

    gossip_steps: int = 1
    quorum: float = 1.0
    deadline: DeadlineConfig = field(default_factory=DeadlineConfig)
    suspect_after: float = 60.0
    heartbeat: float = 10.0
    catchup_lag: int = 2
    stale_weight: float = 0.5
    fetch_timeout: float = 30.0
    fetch_retries: int = 2
    #: slowest transfer a fetch try allows for, bytes/s (None: tries follow ``fetch_timeout`` only)
    min_throughput: float | None = None
    linger: float = 5.0
    isolation_wait: float = 300.0
    progress_ttl: int = 16
    convergence: ConvergenceConfig = field(default_factory=ConvergenceConfig)
    #: announcements (and skips) of phases not reached yet kept per neighbour
    max_pending: int = 16
    #: members tracked from progress records and stop decisions (the consortium bounds it too)
    max_members: int = 1024
    #: distinct members (this peer included) whose progress must reach a round before a peer
    #: catches up to it, trusts a stop at it or a final model of it: F + 1 tolerates F liars
    corroboration: int = 2
    #: rounds of pure averaging (no training) after the agreed stop round, before a peer stops
    final_rounds: int = 0
    #: end the final agreement's exchanges once every member's distance is at most this (0: never)
    final_tolerance: float = 0.0
    #: neighbours per heartbeat or tick that get this peer's progress record, its summary and the
    #: records it pushes, in rotation (``swarm.fanout``); announcements still go to every one
    fanout: int = 5

    def __post_init__(self) -> None:
        if self.gossip_steps < 1:
            raise ConfigError("gossip_steps", f"must be >= 1, got {self.gossip_steps}")
        if not 0 < self.quorum <= 1:
            raise ConfigError("quorum", f"must be in (0, 1], got {self.quorum}")
        if self.heartbeat <= 0 or self.heartbeat >= self.suspect_after:
            raise ConfigError("heartbeat", "must be > 0 and shorter than suspect_after")
        if self.catchup_lag < 1:
            raise ConfigError("catchup_lag", f"must be >= 1, got {self.catchup_lag}")
        if not 0 <= self.stale_weight < 1:
            raise ConfigError("stale_weight", f"must be in [0, 1), got {self.stale_weight}")
        if self.fetch_retries < 0 or self.fetch_timeout <= 0:
            raise ConfigError("fetch", "fetch_timeout > 0 and fetch_retries >= 0")
        if self.min_throughput is not None and not self.min_throughput > 0:
            raise ConfigError("min_throughput", f"must be > 0, got {self.min_throughput}")
        if not self.isolation_wait >= 0:
            raise ConfigError("isolation_wait", f"must be >= 0, got {self.isolation_wait}")
        if self.final_rounds < 0:
            raise ConfigError("final_rounds", f"must be >= 0, got {self.final_rounds}")
        if not self.final_tolerance >= 0:
            raise ConfigError("final_tolerance", f"must be >= 0, got {self.final_tolerance}")
        if self.corroboration < 1:
            raise ConfigError("corroboration", f"must be >= 1, got {self.corroboration}")
        if self.fanout < 1:
            raise ConfigError("fanout", f"must be >= 1, got {self.fanout}")
        if self.max_pending < 1 or self.max_members < 1:
            raise ConfigError("max_pending" if self.max_pending < 1 else "max_members", "must be >= 1")

    def transfer_floor(self, size: int) -> float:
        """Shortest try of a fetch of ``size`` bytes: the transfer at ``min_throughput``, so that a
        large model (a ResNet's 45 MB) is not cut off by a timeout learnt or set for small ones;
        never longer than the phase's longest wait (``size`` is announced: already bounded by
        the own model's size, and bounded here again)."""
        if self.min_throughput is None:
            return 0.0
        return min(max(size, 0) / self.min_throughput, self.deadline.maximum)

    @property
    def round_limit(self) -> int:
        """One past the last round a peer may reach: training and final agreement."""
        return self.convergence.max_rounds + self.final_rounds


# ---------------------------------------------------------------- events (in)
@dataclass(frozen=True)
class ModelReady:
    """The model of phase ``(round, step)`` is encoded and servable (after Train or Offer)."""

    round: int
    step: int
    digest: str
    size: int
    samples: int
    loss: float | None = None


@dataclass(frozen=True)
class Mixed:
    """A Mix action finished; ``distance`` is the local consensus-distance estimate and
    ``metric`` the local validation metric (given after the last step of a round)."""

    round: int
    step: int
    distance: float | None = None
    metric: float | None = None


@dataclass(frozen=True)
class ControlIn:
    """A control message arrived over the authenticated link from ``sender``."""

    sender: str
    msg: ControlMessage


@dataclass(frozen=True)
class FetchDone:
    """A Fetch finished: ``ok`` means the model arrived, matched its digest and passed validation."""

    sender: str
    round: int
    step: int
    ok: bool
    reason: str = ""


@dataclass(frozen=True)
class TimerFired:
    """The time the machine asked for in ``next_timer`` has come."""


Event = Union[ModelReady, Mixed, ControlIn, FetchDone, TimerFired]


# ---------------------------------------------------------------- actions (out)
@dataclass(frozen=True)
class Train:
    """Train one round from the current weights, then encode and report ``ModelReady``."""

    round: int


@dataclass(frozen=True)
class Offer:
    """Encode the current (mixed) weights as the model of ``(round, step)``; report ``ModelReady``."""

    round: int
    step: int


@dataclass(frozen=True)
class SendControl:
    """Send a control message to one neighbour."""

    peer: str
    msg: ControlMessage


@dataclass(frozen=True)
class Fetch:
    """Pull ``peer``'s model of ``(round, step)``: at most ``size`` bytes, matching ``digest``."""

    peer: str
    round: int
    step: int
    digest: str
    size: int
    timeout: float
    catch_up: bool = False


@dataclass(frozen=True)
class Mix:
    """Mix the current weights with the fetched models of ``senders``; report ``Mixed``.

    ``degree``: this peer's degree in the phase's graph for the mixing weights (a
    time-varying schedule's partner count); None: its number of neighbours."""

    round: int
    step: int
    senders: tuple[str, ...]
    final: bool
    degree: int | None = None


@dataclass(frozen=True)
class Adopt:
    """Catch up: weights := (1 - keep_own) * fetched model of ``peer`` + keep_own * own; with
    ``others`` (final models of several members), the coordinate-wise median of the own and
    every fetched model instead."""

    peer: str
    round: int
    keep_own: float
    others: tuple[str, ...] = ()


@dataclass(frozen=True)
class Checkpoint:
    """Round ``round`` is complete: persist the state atomically."""

    round: int


@dataclass(frozen=True)
class Reject:
    """Count and log a neighbour's message refused before any transfer (e.g. an oversized announcement)."""

    peer: str
    round: int
    reason: str
    detail: str


@dataclass(frozen=True)
class Stop:
    """The swarm is done at ``round`` (a later, higher stop decision can still resume it)."""

    round: int
    reason: str


@dataclass(frozen=True)
class Exit:
    """Stopped and nothing changed for ``linger`` seconds: the process may exit."""

    round: int
    reason: str


Action = Union[Train, Offer, SendControl, Fetch, Mix, Adopt, Checkpoint, Reject, Stop, Exit]


@dataclass
class ProtocolStats:
    """What the report shows about one peer's protocol."""

    rounds_completed: int = 0
    phases_timed_out: int = 0
    waiting_s: float = 0.0
    catch_ups: int = 0
    suspicions: int = 0
    rejoins_seen: int = 0
    stale: int = 0
    fetch_failures: int = 0
    bad_control: int = 0
    holds: int = 0
    #: final-agreement rounds skipped because every member was within the tolerance
    final_skipped: int = 0
