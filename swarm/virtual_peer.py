"""A virtual peer's state and its side of the seam: what ``VirtualSwarm`` keeps per peer.

``VirtualPeer`` holds one simulated hospital (its node, executor, served models, traffic
and run record, across crashes and restarts); ``SimSeam`` is the executor's seam on the
virtual clock, turning sends and fetches into the swarm's scheduled events; ``PeerRun`` is
one peer's story for the report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gossip.transport import MAX_OFFERS
from swarm.checkpoint import PeerState
from swarm.errors import SwarmError
from swarm.executor import PeerExecutor, Traffic
from swarm.node import SwarmNode
from swarm.protocol import Fetch, PeerProtocol
from swarm.training import Metrics

if TYPE_CHECKING:
    from swarm.virtual_swarm import VirtualSwarm


class SimulationStalled(SwarmError):
    """The virtual swarm ran past its event or time budget: a protocol bug, never expected."""


@dataclass
class PeerRun:
    """One peer's story in a virtual run, for the report."""

    peer: int
    straggler: bool = False
    rounds_completed: int = 0
    last_round: int = -1
    stop_round: int | None = None
    stop_reason: str = ""
    exited: bool = False
    finish_time: float | None = None
    crashed_at: float | None = None
    restarted_at: float | None = None
    joined_at: float = 0.0
    messages_dropped: int = 0
    bytes_sent: int = 0


@dataclass
class VirtualPeer:
    index: int
    id: str
    node: SwarmNode
    rng_seed: int
    slowdown: float = 1.0
    exec: PeerExecutor | None = None
    alive: bool = False
    incarnation: int = 0
    served: dict[tuple[int, int], tuple[Any, str]] = field(default_factory=dict)
    #: second payloads of a phase, fetched by digest only (CHOCO whole copies): digest -> (phase, payload)
    extra_served: dict[str, tuple[tuple[int, int], Any]] = field(default_factory=dict)
    served_bytes: int = 0
    traffic: Traffic = field(default_factory=Traffic)
    timer_at: float | None = None
    checkpoint: PeerState | None = None
    local: Metrics | None = None  # the latest local test figures (for the metrics rows)
    round_seen: int = -1  # the round last pushed on the swarm's max-heap
    run: PeerRun = field(default_factory=lambda: PeerRun(-1))

    @property
    def proto(self) -> PeerProtocol | None:
        """The running protocol (None while crashed or not yet joined)."""
        return self.exec.protocol if self.exec is not None else None


class SimSeam:
    """The virtual clock's side of a peer's executor: sends and fetches become scheduled events."""

    def __init__(self, swarm: VirtualSwarm, peer: VirtualPeer) -> None:
        self.swarm, self.peer = swarm, peer

    def now(self) -> float:
        return self.swarm.now

    def send(self, peer: str, data: bytes) -> None:
        self.swarm.send_from(self.peer, peer, data)

    def serve(self, round_: int, step: int, key: str, payload: Any, extra: bool = False) -> None:
        served, extras = self.peer.served, self.peer.extra_served
        if extra:
            extras[key] = ((round_, step), payload)
        else:
            served[(round_, step)] = (payload, key)
        # as a real peer's transport: the newest MAX_OFFERS models (and none older than 2 rounds)
        for old in [k for k in served if k < (round_ - 2, 0)] + sorted(served)[:-MAX_OFFERS]:
            served.pop(old, None)
        for old in [k for k, (phase, _) in extras.items() if phase < (round_ - 2, 0)]:
            del extras[old]

    def fetch(self, fetch: Fetch) -> None:
        self.swarm.fetch_for(self.peer, fetch)

    def train(self, round_: int) -> None:
        self.swarm.train_peer(self.peer, round_)

    def bytes_served(self) -> int:
        return self.peer.served_bytes

    def performed(self) -> None:
        self.swarm.arm_timer(self.peer)
