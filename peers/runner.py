"""The thin trio driver of a real peer: feeds ``PeerProtocol`` from the network and clock.

Everything the protocol decides is carried out here with real I/O: control messages over
the transport, model fetches with deadlines and size limits, training in a worker thread
(so heartbeats keep flowing while torch runs), atomic checkpoints. Handling an event and
performing its actions is synchronous; only sends, fetches and training run as tasks,
which report back with new events. The simulation drives the very same protocol and
``SwarmNode`` on a virtual clock instead.

Peer-exchange messages are not the protocol's business: they go to ``on_exchange`` (the
discovery component, :mod:`peers.connector`), and are counted as bad control if there is
none or it refuses them.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import dataclass, field
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import numpy as np
import trio

from gossip.codec import digest
from gossip.control import PeerExchange, decode_control, encode_control
from gossip.errors import BadPayload, CodecError, TransportError
from gossip.transport import AsyncTransport
from swarm.checkpoint import CheckpointStore
from swarm.peer_state import accept_transfer, inbox_key, snapshot
from swarm.node import SwarmNode
from swarm.protocol import (
    Adopt, Checkpoint, ControlIn, Exit, Fetch, FetchDone, Mix, Mixed, ModelReady, Offer,
    PeerProtocol, SendControl, Stop, TimerFired, Train,
)

log = logging.getLogger("medswarm.peer")

#: validation metric of the current weights (lower is better), or None
EvaluateFn = Callable[[Mapping[str, np.ndarray]], float | None]
#: the seed of a round's local training
SeedFn = Callable[[int], int]


@dataclass
class PeerOutcome:
    """How a peer's run ended."""

    peer_id: str
    stop_round: int | None = None
    reason: str = ""
    rounds_completed: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    bad_control: int = 0


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
    """Runs one peer until the protocol says ``Exit`` (see the module docstring)."""

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
        on_round: Callable[[int, Mapping[str, Any]], None] | None = None,
        on_exchange: Callable[[str, PeerExchange], bool] | None = None,
        max_held: int = 1024,
        offload: Callable[..., Awaitable[Any]] | None = None,
    ) -> None:
        self.transport, self.node, self.protocol = transport, node, protocol
        self.evaluate, self.train_seed, self.store = evaluate, train_seed, store
        self.max_model_bytes = max_model_bytes
        self.on_round = on_round
        self.on_exchange = on_exchange
        #: runs local training off the event loop (a worker thread); tests on trio's virtual
        #: clock pass an inline one so that virtual time cannot jump during real computation
        self.offload = offload or trio.to_thread.run_sync
        self.outcome = PeerOutcome(node.peer_id)
        self._inbox: dict[tuple[str, int, int], Any] = {}
        self._degrees: dict[str, int] = {}
        self._nursery: trio.Nursery | None = None
        self._wake = trio.Event()
        self._done = trio.Event()
        self._train_lock = trio.Lock()
        self._started = False
        self._held: deque[ControlIn] = deque(maxlen=max_held)

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
            self._perform(self.protocol.start(trio.current_time(), seq_floor))
            while self._held and not self._done.is_set():
                self._feed(self._held.popleft())
            await self._done.wait()
            nursery.cancel_scope.cancel()
        self.outcome.rounds_completed = self.protocol.stats.rounds_completed
        self.outcome.rejected = dict(self.node.stats.rejected)
        self.outcome.bad_control = self.protocol.stats.bad_control
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
            bad_control=proto.stats.bad_control, exited=proto.exited, catch_ups=proto.stats.catch_ups,
        )

    def _feed(self, event: Any) -> None:
        self._perform(self.protocol.handle(event, trio.current_time()))

    async def _receive_loop(self) -> None:
        while True:
            try:
                env = await self.transport.receive()
            except TransportError:
                return  # closed: the peer is shutting down
            try:
                msg = decode_control(env.data)
            except CodecError as err:
                self.protocol.stats.bad_control += 1
                log.warning("event=bad-control peer=%s round=%d from=%s reason=%s",
                            self.node.peer_id, self.protocol.round, env.sender, err.reason)
                continue
            if isinstance(msg, PeerExchange):
                if self.on_exchange is None or not self.on_exchange(env.sender, msg):
                    self.protocol.stats.bad_control += 1
                    log.warning("event=bad-control peer=%s round=%d from=%s reason=%s",
                                self.node.peer_id, self.protocol.round, env.sender,
                                "unexpected-peer-exchange" if self.on_exchange is None
                                else "refused-peer-exchange")
                continue
            if not self._started:
                self._held.append(ControlIn(env.sender, msg))
                continue
            if env.sender not in self.protocol.neighbours:
                self._add_new_neighbours()  # a link that came up since the last membership check
            self._feed(ControlIn(env.sender, msg))

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
                self._feed(TimerFired())

    # ------------------------------------------------------------ actions
    def _perform(self, actions: list) -> None:
        queue = deque(actions)
        while queue:
            action = queue.popleft()
            follow = self._do(action)
            if follow:
                queue.extend(follow)
        self._wake.set()
        self._wake = trio.Event()

    def _do(self, action: Any) -> list | None:
        now = trio.current_time()
        assert self._nursery is not None
        if isinstance(action, SendControl):
            self._nursery.start_soon(self._send, action.peer, encode_control(action.msg))
        elif isinstance(action, Train):
            self._nursery.start_soon(self._train, action.round)
        elif isinstance(action, Offer):
            return self._offer(action.round, action.step, None)
        elif isinstance(action, Fetch):
            degree = self.protocol.announced_degree(action.peer)
            if degree is not None:
                self._degrees[action.peer] = degree
            self._nursery.start_soon(self._fetch, action)
        elif isinstance(action, Mix):
            received = {s: self._inbox.pop((s, action.round, action.step)) for s in action.senders
                        if (s, action.round, action.step) in self._inbox}
            degrees = {p: self._degrees.get(p, d) for p, d in self.node.neighbour_degrees.items()}
            distance = self.node.mix(received, degrees, measure=action.final)
            metric = self.evaluate(self.node.weights) if action.final else None
            if action.final and self.on_round is not None:
                self.on_round(action.round, {"distance": distance, "metric": metric, "loss": self.node.last_loss})
            return self.protocol.handle(Mixed(action.round, action.step, distance, metric), now)
        elif isinstance(action, Adopt):
            msg = self._inbox.pop(("catch-up:" + action.peer, action.round, -1), None)
            if msg is not None:
                self.node.adopt(msg, action.keep_own)
                log.info("event=catch-up peer=%s round=%d from=%s keep_own=%.2f", self.node.peer_id,
                         action.round, action.peer, action.keep_own)
        elif isinstance(action, Checkpoint):
            self._checkpoint(action.round)
        elif isinstance(action, Stop):
            self.outcome.stop_round, self.outcome.reason = action.round, action.reason
            log.info("event=stop peer=%s round=%d reason=%s", self.node.peer_id, action.round, action.reason)
        elif isinstance(action, Exit):
            self.outcome.stop_round, self.outcome.reason = action.round, action.reason
            self._done.set()
        return None

    def _offer(self, round_: int, step: int, loss: float | None) -> list:
        payload = self.node.encode_model(round_)
        key = digest(payload)
        self.transport.offer(key, payload)
        return self.protocol.handle(
            ModelReady(round_, step, key, len(payload), len(self.node.data), loss), trio.current_time())

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
            result = await self.offload(self.node.train_fn, self.node.weights, self.node.data,
                                                   self.train_seed(round_))
        if self.protocol.phase != (round_, 0) or self.protocol.exited:
            return  # caught up or stopped meanwhile: this training is stale
        self.node.weights = dict(result.weights)
        self.node.last_loss = float(result.loss)
        self._perform(self._offer(round_, 0, float(result.loss)))

    async def _fetch(self, fetch: Fetch) -> None:
        ok, reason = False, ""
        with trio.move_on_after(fetch.timeout) as scope:
            try:
                payload = await self.transport.fetch(fetch.peer, fetch.digest, min(fetch.size, self.max_model_bytes))
            except BadPayload as err:  # the neighbour broke its own announcement: count it
                self.node.reject(fetch.peer, err.reason, str(err), fetch.round)
                payload, reason = None, err.reason
            except TransportError as err:
                payload, reason = None, f"transport: {err}"
        if scope.cancelled_caught:
            payload, reason = None, "timeout"
        if payload is not None:
            msg, reason = accept_transfer(self.node, fetch, payload)
            if msg is not None:
                self._inbox[inbox_key(fetch)] = msg
                ok = True
        self._feed(FetchDone(fetch.peer, fetch.round, fetch.step, ok, reason))

    def _checkpoint(self, round_: int) -> None:
        if self.store is None:
            return
        self.store.save(snapshot(self.node, self.protocol, round_))
