"""The thin trio driver of a real peer: network, clock and a worker thread for training.

What the protocol decides is carried out by ``swarm.executor.PeerExecutor``, the same
executor the simulation uses; this driver only supplies its seam: control messages go
out over the transport, models are served and fetched with deadlines and size limits,
local training runs in a worker thread (so heartbeats keep flowing while torch runs),
and a timer task delivers ``TimerFired`` when the protocol asks for it.

Peer-exchange messages are not the protocol's business: they go to ``on_exchange`` (the
discovery component, :mod:`peers.connector`), and are counted as bad control if there is
none or it refuses them.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import trio

from gossip.control import PeerExchange
from gossip.errors import BadPayload, TransportError
from gossip.transport import AsyncTransport, Payload
from swarm.checkpoint import CheckpointStore
from swarm.executor import EvaluateFn, ExecutorHooks, PeerExecutor, RoundInfo, SeedFn, Traffic
from swarm.node import SwarmNode
from swarm.protocol import ControlIn, Fetch, PeerProtocol, TimerFired

log = logging.getLogger("medswarm.peer")

@dataclass
class PeerOutcome:
    """How a peer's run ended."""

    peer_id: str
    stop_round: int | None = None
    reason: str = ""
    rounds_completed: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    bad_control: int = 0
    bytes_sent: int = 0
    catch_ups: int = 0


@dataclass(frozen=True)
class RunnerView:
    """A read-only copy of what a running peer is doing, for the status endpoint."""

    round: int
    neighbours: tuple[str, ...]
    suspected: tuple[str, ...]
    loss: float | None
    metric: float | None
    distance: float | None
    voted: bool
    stop_round: int | None
    reason: str
    rounds_completed: int
    rejected: Mapping[str, int]
    bad_control: int
    exited: bool
    catch_ups: int = 0


class PeerRunner:
    """Runs one peer until the protocol says ``Exit`` (see the module docstring).

    ``traffic`` counts the control bytes this peer sends (shared with discovery, so that
    ``bytes_sent`` covers every message; a fresh one if not given).
    """

    def __init__(
        self,
        transport: AsyncTransport,
        node: SwarmNode,
        protocol: PeerProtocol,
        *,
        evaluate: EvaluateFn,
        train_seed: SeedFn,
        store: CheckpointStore | None = None,
        max_model_bytes: int = 256 * 1024 * 1024,
        on_round: Callable[[RoundInfo], None] | None = None,
        on_exchange: Callable[[str, PeerExchange], bool] | None = None,
        max_held: int = 1024,
        offload: Callable[..., Awaitable[Any]] | None = None,
        traffic: Traffic | None = None,
    ) -> None:
        self.transport, self.node = transport, node
        self.max_model_bytes = max_model_bytes
        #: runs local training off the event loop (a worker thread); tests on trio's virtual
        #: clock pass an inline one so that virtual time cannot jump during real computation
        self.offload = offload or trio.to_thread.run_sync
        self.outcome = PeerOutcome(node.peer_id)
        self.executor = PeerExecutor(
            node, protocol, self, evaluate=evaluate, train_seed=train_seed, store=store,
            hooks=ExecutorHooks(on_round=on_round, on_stop=self._stopped, on_exit=self._exited,
                                on_exchange=on_exchange),
            traffic=traffic)
        self._nursery: trio.Nursery | None = None
        self._wake = trio.Event()
        self._done = trio.Event()
        self._train_lock = trio.Lock()
        self._started = False
        self._held: deque[ControlIn] = deque(maxlen=max_held)

    @property
    def protocol(self) -> PeerProtocol:
        """The peer's state machine (the executor's; replaceable before ``run``)."""
        return self.executor.protocol

    @protocol.setter
    def protocol(self, protocol: PeerProtocol) -> None:
        self.executor.protocol = protocol

    @property
    def on_exchange(self) -> Callable[[str, PeerExchange], bool] | None:
        """Where peer-exchange messages go (discovery); settable after construction."""
        return self.executor.hooks.on_exchange

    @on_exchange.setter
    def on_exchange(self, fn: Callable[[str, PeerExchange], bool] | None) -> None:
        self.executor.hooks.on_exchange = fn

    # ------------------------------------------------------------ running
    async def run(self, seq_floor: int = 0,
                  ready: Callable[[], Awaitable[None]] | None = None) -> PeerOutcome:
        """Start (or resume) the protocol and run until it exits.

        ``ready``, if given, is awaited before the protocol starts (e.g. until enough
        neighbours are linked). Messages keep being received meanwhile: peer exchanges are
        handled at once, the others are held (the newest ``max_held``) and fed to the
        protocol as soon as it has started.
        """
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._receive_loop)
            if ready is not None:
                await ready()
            self._add_new_neighbours()
            nursery.start_soon(self._timer_loop)
            nursery.start_soon(self._membership_loop)
            self._started = True
            self.executor.start(seq_floor)
            while self._held and not self._done.is_set():
                self.executor.handle(self._held.popleft())
            await self._done.wait()
            nursery.cancel_scope.cancel()
        self.outcome.rounds_completed = self.protocol.stats.rounds_completed
        self.outcome.rejected = dict(self.node.stats.rejected)
        self.outcome.bad_control = self.bad_control()
        self.outcome.bytes_sent = self.executor.bytes_sent
        self.outcome.catch_ups = self.protocol.stats.catch_ups
        return self.outcome

    def view(self, now: float | None = None) -> RunnerView:
        """What this peer is doing right now (``now`` on trio's clock, default the current time)."""
        proto = self.protocol
        now = trio.current_time() if now is None else now
        loss, metric, distance = proto.last_figures()
        return RunnerView(
            round=proto.round, neighbours=tuple(proto.neighbours),
            suspected=tuple(proto.suspected_neighbours(now)),
            loss=loss, metric=metric, distance=distance, voted=proto.convergence.voted(),
            stop_round=proto.stop_round, reason=proto.stop_reason,
            rounds_completed=proto.stats.rounds_completed, rejected=dict(self.node.stats.rejected),
            bad_control=self.bad_control(), exited=proto.exited, catch_ups=proto.stats.catch_ups,
        )

    def bad_control(self) -> int:
        """Control messages refused: by the protocol and executor, and by the transport."""
        return self.protocol.stats.bad_control + self.transport.bad_control

    async def _receive_loop(self) -> None:
        while True:
            try:
                env = await self.transport.receive()
            except TransportError:
                return  # closed: the peer is shutting down
            msg = self.executor.decode(env.sender, env.data)
            if msg is None:
                continue
            if not self._started:
                self._held.append(ControlIn(env.sender, msg))
                continue
            if env.sender not in self.protocol.neighbours:
                self._add_new_neighbours()  # a link that came up since the last membership check
            self.executor.handle(ControlIn(env.sender, msg))

    def _add_new_neighbours(self) -> None:
        for peer in self.transport.neighbours():
            if peer not in self.protocol.neighbours:
                self.protocol.add_neighbour(peer, trio.current_time())
                self.node.neighbour_degrees.setdefault(peer, 1)
                log.info("event=neighbour peer=%s round=%d neighbour=%s",
                         self.node.peer_id, self.protocol.round, peer)

    async def _membership_loop(self, every: float = 0.5) -> None:
        """Links that come up later (peers dialling in or found) become protocol neighbours."""
        while True:
            self._add_new_neighbours()
            await trio.sleep(every)

    async def _timer_loop(self) -> None:
        while True:
            when = self.protocol.next_timer()
            wake = self._wake
            with trio.move_on_at(math.inf if when is None else when) as scope:
                await wake.wait()
            if scope.cancelled_caught:
                self.executor.handle(TimerFired())

    # ------------------------------------------------------------ the executor's seam
    def now(self) -> float:
        return trio.current_time()

    def send(self, peer: str, data: bytes) -> None:
        self._spawn(self._send, peer, data)

    def serve(self, round_: int, step: int, key: str, payload: Payload, extra: bool = False) -> None:
        self.transport.offer(key, payload)

    def fetch(self, fetch: Fetch) -> None:
        self._spawn(self._fetch, fetch)

    def train(self, round_: int) -> None:
        self._spawn(self._train, round_)

    def bytes_served(self) -> int:
        return self.transport.bytes_served

    def performed(self) -> None:
        self._wake.set()
        self._wake = trio.Event()

    def _spawn(self, fn: Callable[..., Awaitable[None]], *args: Any) -> None:
        if self._nursery is None:
            raise RuntimeError("PeerRunner.run has not started")
        self._nursery.start_soon(fn, *args)

    def _stopped(self, round_: int, reason: str) -> None:
        self.outcome.stop_round, self.outcome.reason = round_, reason

    def _exited(self, round_: int, reason: str) -> None:
        self.outcome.stop_round, self.outcome.reason = round_, reason
        self._done.set()

    async def _send(self, peer: str, data: bytes) -> None:
        try:
            await self.transport.send(peer, data)
        except TransportError as err:
            log.info("event=send-failed peer=%s to=%s detail=%s", self.node.peer_id, peer, err)

    async def _train(self, round_: int) -> None:
        # One training at a time: a catch-up can ask for round r+k while round r still runs in
        # its thread, and two threads must never share the trainer's model. The waiting one
        # starts from the weights as they are then (after the adoption).
        async with self._train_lock:
            if self.protocol.phase != (round_, 0) or self.protocol.exited:
                return  # overtaken while waiting for the running one
            result = await self.offload(self.executor.train_now, round_)
        self.executor.trained(round_, result)

    async def _fetch(self, fetch: Fetch) -> None:
        payload, reason = None, ""
        with trio.move_on_after(fetch.timeout) as scope:
            try:
                payload = await self.transport.fetch(fetch.peer, fetch.digest, min(fetch.size, self.max_model_bytes))
            except BadPayload as err:  # the neighbour broke its own announcement: count it
                self.node.reject(fetch.peer, err.reason, str(err), fetch.round)
                reason = err.reason
            except TransportError as err:
                reason = f"transport: {err}"
        if scope.cancelled_caught:
            payload, reason = None, "timeout"
        self.executor.fetched(fetch, payload, reason)
