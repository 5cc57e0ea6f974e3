"""Carries out a peer's protocol actions: the one place where a decision becomes an effect.

``PeerProtocol`` decides (no I/O); ``PeerExecutor`` performs what it decided on the peer's
``SwarmNode``: it encodes and sends control messages, serves and fetches models, checks
fetched ones into a bounded inbox, mixes, adopts, checkpoints and evaluates, and feeds
the outcomes back as events. What differs between the virtual-clock simulation and a
real peer (how bytes move, what time it is, where training runs) is a small ``Seam``
that each driver supplies; nothing else is written twice.

Actions are performed depth first: an action whose outcome is known at once (an Offer,
a Mix) feeds its event back and performs the follow-up actions before the next one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np

from gossip.codec import WeightsMessage, digest
from gossip.control import ControlMessage, PeerExchange, decode_control, encode_control
from gossip.errors import CodecError
from gossip.signing import RecordSigner
from gossip.transport import Payload
from swarm.checkpoint import CheckpointStore, PeerState
from swarm.membership import Verify
from swarm.choco import Resync
from swarm.node import SwarmNode
from swarm.swarm_view import MemberIndex
from swarm.peer_state import accept_transfer, fetch_limit, snapshot
from swarm.privacy import spent_of
from swarm.protocol import (
    Action, Adopt, Checkpoint, ControlIn, Event, Exit, Fetch, FetchDone, Mix, Mixed, ModelReady,
    Offer, PeerProtocol, ProtocolConfig, Reject, SendControl, Stop, Train,
)

log = logging.getLogger("medswarm.peer")

#: the local validation metric of some weights (lower is better), or None
EvaluateFn = Callable[[Mapping[str, np.ndarray]], "float | None"]
#: the seed of a round's local training
SeedFn = Callable[[int], int]


class Seam(Protocol):
    """What a driver supplies: moving bytes, the clock and where training runs.

    Every method returns at once; a fetch or a training reports back later through
    ``PeerExecutor.fetched`` / ``PeerExecutor.trained``.
    """

    def now(self) -> float:
        """The driver's clock (virtual or trio's), in seconds."""

    def send(self, peer: str, data: bytes) -> None:
        """Send an encoded control message to ``peer`` (best effort; losses are the protocol's)."""

    def serve(self, round_: int, step: int, key: str, payload: Payload, extra: bool = False) -> None:
        """Make ``payload`` (digest ``key``) fetchable by neighbours as the model of ``(round_, step)``;
        ``extra``: a second payload of the phase, fetched by digest only (a CHOCO whole copy)."""

    def fetch(self, fetch: Fetch) -> None:
        """Start pulling a model; report with ``PeerExecutor.fetched`` (or never, if lost)."""

    def train(self, round_: int) -> None:
        """Start round ``round_``'s training (``PeerExecutor.train_now``); report with ``trained``."""

    def bytes_served(self) -> int:
        """Bytes of models this peer has served so far (weights on the wire)."""

    def performed(self) -> None:
        """A batch of actions is done: re-arm the timer for ``protocol.next_timer()``."""


@dataclass(frozen=True)
class RoundInfo:
    """What a peer knows at the end of a round (after its last mix)."""

    round: int
    loss: float | None
    metric: float | None
    distance: float | None
    bytes_sent: int


@dataclass
class ExecutorHooks:
    """Optional callbacks of a driver: the report, the status page, the simulation's faults."""

    on_round: Callable[[RoundInfo], None] | None = None
    on_checkpoint: Callable[[PeerState], None] | None = None
    on_stop: Callable[[int, str], None] | None = None
    on_exit: Callable[[int, str], None] | None = None
    #: peer-exchange messages (discovery); True if accepted, else counted as bad control
    on_exchange: Callable[[str, PeerExchange], bool] | None = None


@dataclass
class Traffic:
    """Control bytes this peer sent; kept by the driver across restarts of the executor."""

    control_bytes: int = 0

    def bytes_sent(self, served: int) -> int:
        """Everything on the wire: these control bytes and ``served`` bytes of models."""
        return self.control_bytes + served


@dataclass
class Inbox:
    """Fetched models waiting to be mixed or adopted, bounded by construction.

    A phase's model is kept only while the peer is in that phase; a catch-up model only
    while it is ahead of the peer, and one per sender. So at most one model per neighbour
    plus one catch-up per neighbour is ever held, however many transfers arrive late.
    """

    models: dict[tuple[str, int, int], WeightsMessage] = field(default_factory=dict)
    catch_up: dict[str, tuple[int, WeightsMessage]] = field(default_factory=dict)

    def put(self, fetch: Fetch, msg: WeightsMessage) -> None:
        """Keep ``msg`` until the protocol mixes or adopts it."""
        if fetch.catch_up:
            self.catch_up[fetch.peer] = (fetch.round, msg)
        else:
            self.models[(fetch.peer, fetch.round, fetch.step)] = msg

    def take(self, senders: tuple[str, ...], round_: int, step: int) -> dict[str, WeightsMessage]:
        """The models of ``senders`` for phase ``(round_, step)``, removed from the inbox."""
        return {s: self.models.pop((s, round_, step)) for s in senders if (s, round_, step) in self.models}

    def take_catch_up(self, peer: str, round_: int) -> WeightsMessage | None:
        """``peer``'s catch-up model of ``round_``, if it arrived."""
        entry = self.catch_up.get(peer)
        if entry is None or entry[0] != round_:
            return None
        del self.catch_up[peer]
        return entry[1]

    def prune(self, phase: tuple[int, int]) -> None:
        """Drop what the peer can no longer use once it is in ``phase`` (rounds never go back)."""
        for key in [k for k in self.models if (k[1], k[2]) < phase]:
            del self.models[key]
        for peer in [p for p, (r, _) in self.catch_up.items() if r <= phase[0]]:
            del self.catch_up[peer]

    def __len__(self) -> int:
        return len(self.models) + len(self.catch_up)


class PeerExecutor:
    """Performs one peer's protocol actions through a driver's ``Seam`` (see the module docstring).

    Parameters
    ----------
    node, protocol:
        The peer's model holder and its state machine.
    seam:
        The driver: clock, sends, fetches, serving, training offload, timer.
    evaluate:
        The local validation metric after a round's last mix (the convergence vote's input).
    train_seed:
        The seed of each round's local training.
    store:
        Where checkpoints go (None: kept by ``hooks.on_checkpoint`` only).
    """

    def __init__(self, node: SwarmNode, protocol: PeerProtocol, seam: Seam, *, evaluate: EvaluateFn,
                 train_seed: SeedFn, store: CheckpointStore | None = None,
                 hooks: ExecutorHooks | None = None, traffic: Traffic | None = None,
                 batches: Callable[[list[Action]], None] | None = None) -> None:
        self.node, self.protocol, self.seam = node, protocol, seam
        #: every batch of actions the protocol returns goes through this (default ``perform``);
        #: a driver that watches batches (the simulation's invariant checks) wraps ``perform``
        self.batches = batches or self.perform
        self.evaluate, self.train_seed, self.store = evaluate, train_seed, store
        self.hooks = hooks or ExecutorHooks()
        self.traffic = traffic or Traffic()
        self.inbox = Inbox()
        #: CHOCO resyncs in flight: the whole copy's fetch -> the announced fetch it stands for
        self.resyncs: dict[Fetch, Fetch] = {}
        self.degrees: dict[str, int] = {}
        #: set by a driver when the peer dies mid-batch: the remaining actions are dropped
        self.halted = False

    # ------------------------------------------------------------ events in
    @property
    def bytes_sent(self) -> int:
        """Everything this peer put on the wire: control messages and served models."""
        return self.traffic.bytes_sent(self.seam.bytes_served())

    def start(self, seq_floor: int = 0) -> None:
        """Start (or resume) the protocol and perform its first actions.

        The own model is encoded once first, so that the protocol knows from the start how
        large a neighbour's model may be (``fetch_limit``) and refuses larger announcements.
        """
        self._limit_fetches(len(self.node.encode_model(self.protocol.round)))
        self.batches(self.protocol.start(self.seam.now(), seq_floor))

    def handle(self, event: Event) -> None:
        """Feed one event to the protocol and perform what it decides."""
        self.batches(self.protocol.handle(event, self.seam.now()))

    def control(self, sender: str, data: bytes) -> None:
        """A control message arrived from ``sender``: decode, check and feed it (bad ones are counted)."""
        msg = self.decode(sender, data)
        if msg is not None:
            self.handle(ControlIn(sender, msg))

    def decode(self, sender: str, data: bytes) -> ControlMessage | None:
        """The protocol message in ``data``, or None: undecodable ones are counted as bad
        control and logged; peer-exchange ones go to ``hooks.on_exchange`` (a refusal, or
        no discovery to take them, counts as bad control too)."""
        try:
            msg: ControlMessage = decode_control(data)
        except CodecError as err:
            self._bad_control(sender, err.reason)
            return None
        if isinstance(msg, PeerExchange):
            on_exchange = self.hooks.on_exchange
            if on_exchange is None or not on_exchange(sender, msg):
                self._bad_control(sender, "unexpected-peer-exchange" if on_exchange is None
                                  else "refused-peer-exchange")
            return None
        return msg

    def fetched(self, fetch: Fetch, payload: Payload | None, reason: str = "") -> None:
        """A fetch ended: ``payload`` is what arrived (None: nothing did, ``reason`` says why)."""
        ok = False
        self.node.replicas.retain(self.protocol.neighbours)  # one replica per current neighbour
        announced = self.resyncs.pop(fetch, None)
        target = announced or fetch
        if payload is not None:
            msg, reason = accept_transfer(self.node, fetch, payload, whole=announced is not None)
            if isinstance(msg, Resync):
                if self._resync(fetch, msg):
                    return  # reported when the whole copy arrives (or its fetch times out)
                msg, reason = None, "rejected"
            if msg is not None:
                self.inbox.put(target, msg)
                ok = True
        self.handle(FetchDone(target.peer, target.round, target.step, ok, reason))
        self.inbox.prune(self.protocol.phase)

    def _resync(self, fetch: Fetch, resync: Resync) -> bool:
        """Fetch the whole public copy a CHOCO difference could not be applied without; False
        (refused, counted) if it is larger than any model this peer accepts."""
        limit = self.protocol.max_model_bytes
        if limit is not None and resync.size > limit:
            self.node.reject(fetch.peer, "oversized-announcement",
                             f"whole copy of {resync.size} bytes, limit {limit}", fetch.round)
            return False
        whole = replace(fetch, digest=resync.digest, size=resync.size)
        log.info("event=resync peer=%s round=%d from=%s bytes=%d", self.node.peer_id, fetch.round, fetch.peer,
                 resync.size)
        self.resyncs[whole] = fetch
        while len(self.resyncs) > 2 * max(1, len(self.protocol.neighbours)):
            del self.resyncs[next(iter(self.resyncs))]  # oldest first: lost transfers
        self.seam.fetch(whole)
        return True

    def train_now(self, round_: int) -> Any:
        """Run round ``round_``'s local training on the current weights (in the driver's worker)."""
        node = self.node
        start = time.perf_counter()
        result = node.train_fn(node.weights, node.data, self.train_seed(round_))
        node.stats.train_s += time.perf_counter() - start
        return result

    def trained(self, round_: int, result: Any) -> None:
        """Round ``round_``'s training finished; ignored if the peer moved on meanwhile."""
        if self.protocol.exited or self.protocol.phase != (round_, 0):
            return  # caught up or stopped meanwhile: this training is stale
        self.node.weights = dict(result.weights)
        self.node.last_loss = float(result.loss)
        self._offer(round_, 0, float(result.loss))

    # ------------------------------------------------------------ actions out
    def perform(self, actions: list[Action]) -> None:
        """Carry out ``actions`` in order (depth first), then let the driver re-arm its timer."""
        for action in actions:
            if self.halted:
                return
            self._do(action)
        if not self.halted:
            self.seam.performed()

    def _do(self, action: Action) -> None:
        if isinstance(action, SendControl):
            data = encode_control(action.msg)
            self.traffic.control_bytes += len(data)
            self.seam.send(action.peer, data)
        elif isinstance(action, Fetch):
            degree = self.protocol.announced_degree(action.peer)
            if degree is not None and degree >= 1:  # 0: announced before its partner's link was up
                self.degrees[action.peer] = degree
            self.seam.fetch(action)
        elif isinstance(action, Train):
            self.seam.train(action.round)
        elif isinstance(action, Offer):
            self._offer(action.round, action.step, None)
        elif isinstance(action, Mix):
            self._mix(action)
        elif isinstance(action, Adopt):
            self._adopt(action)
        elif isinstance(action, Checkpoint):
            self._checkpoint(action.round)
        elif isinstance(action, Reject):
            self.node.reject(action.peer, action.reason, action.detail, action.round)
        elif isinstance(action, Stop):
            log.info("event=stop peer=%s round=%d reason=%s", self.node.peer_id, action.round, action.reason)
            if self.hooks.on_stop is not None:
                self.hooks.on_stop(action.round, action.reason)
        elif isinstance(action, Exit):
            if self.hooks.on_exit is not None:
                self.hooks.on_exit(action.round, action.reason)
        else:
            raise TypeError(f"unknown action {action!r}")

    def _limit_fetches(self, own_size: int, whole: bool = False) -> None:
        """Derive the largest model accepted from this peer's own encoded one (``whole``: a
        float32 CHOCO copy, which no neighbour's model or copy may exceed by much)."""
        compact = not whole
        self.protocol.limit_model_bytes(fetch_limit(own_size, self.node.float16 and compact,
                                                    self.node.q8 and compact))

    def _audience(self, round_: int, step: int) -> str:
        """Whose CHOCO public copy a phase uses: the partner's on a time-varying graph, else
        ``""`` (the copy every neighbour holds; also for the final model, offered to all)."""
        schedule = self.protocol.exchange.schedule
        if schedule is None or step >= self.protocol.config.gossip_steps:
            return ""
        partners = schedule((round_, step))
        return next(iter(partners)) if len(partners) == 1 else ""

    def _offer(self, round_: int, step: int, loss: float | None) -> None:
        if self.node.choco is not None:
            self.node.public.retain(self.protocol.neighbours)
        payload, full = self.node.offer_payloads(round_, self._audience(round_, step))
        self._limit_fetches(len(full if full is not None else payload), whole=self.node.choco is not None)
        key = digest(payload)
        if full is not None:
            self.seam.serve(round_, step, digest(full), full, extra=True)
        self.seam.serve(round_, step, key, payload)
        self.handle(ModelReady(round_, step, key, len(payload), len(self.node.data), loss))

    def _mix(self, action: Mix) -> None:
        received = self.inbox.take(action.senders, action.round, action.step)
        self.inbox.prune((action.round, action.step + 1))
        degrees = {p: self.degrees.get(p, d) for p, d in self.node.neighbour_degrees.items()}
        distance = self.node.mix(received, degrees, measure=action.final, self_degree=action.degree,
                                 audience=self._audience(action.round, action.step))
        metric = None
        if action.final:
            metric = self.evaluate(self.node.weights)
            log.info("event=round peer=%s round=%d loss=%s metric=%s distance=%s%s", self.node.peer_id,
                     action.round, self.node.last_loss, metric, distance, _dp_field(self.node))
            if self.hooks.on_round is not None:
                self.hooks.on_round(RoundInfo(action.round, self.node.last_loss, metric, distance,
                                              self.bytes_sent))
        self.handle(Mixed(action.round, action.step, distance, metric))

    def _adopt(self, action: Adopt) -> None:
        msgs = [m for p in (action.peer, *action.others)
                if (m := self.inbox.take_catch_up(p, action.round)) is not None]
        if not msgs:
            return
        if action.others:
            self.node.adopt_median(msgs)
        else:
            self.node.adopt(msgs[0], action.keep_own)
        log.info("event=catch-up peer=%s round=%d from=%s keep_own=%s", self.node.peer_id,
                 action.round, ",".join((action.peer, *action.others)),
                 "median" if action.others else f"{action.keep_own:.2f}")

    def _checkpoint(self, round_: int) -> None:
        state = snapshot(self.node, self.protocol, round_)
        if self.store is not None:
            self.store.save(state)
        if self.hooks.on_checkpoint is not None:
            self.hooks.on_checkpoint(state)

    def _bad_control(self, sender: str, reason: str) -> None:
        self.protocol.stats.bad_control += 1
        log.warning("event=bad-control peer=%s round=%d from=%s reason=%s",
                    self.node.peer_id, self.protocol.round, sender, reason)


def _dp_field(node: SwarmNode) -> str:
    """`` dp_epsilon_spent=X`` for the round log line under DP, else nothing."""
    spent = spent_of(node.train_fn)
    return "" if spent is None else f" dp_epsilon_spent={spent:.4g}"


def resume(peer_id: str, neighbours: list[str], config: ProtocolConfig,
           state: PeerState | None,
           is_member: Callable[[str], bool] | None = None, signer: RecordSigner | None = None,
           verify: Verify | None = None,
           schedule: Callable[[tuple[int, int]], frozenset[str]] | None = None,
           member_index: MemberIndex | None = None) -> tuple[PeerProtocol, int]:
    """The protocol of a peer starting fresh (``state`` None) or from its last checkpoint.

    ``is_member`` is the swarm's membership check (the consortium's; None: any id);
    ``signer`` and ``verify`` sign this peer's flooded records and check others' (see
    ``gossip.signing``); ``schedule`` picks the neighbours of each phase (a time-varying
    graph; None: all); ``member_index`` places members in the swarm's bitmaps (the
    consortium's order; None: hashed ids, see ``swarm.swarm_view``). Returns the protocol and the sequence-number floor to ``start`` it
    with (a restarted peer must not reuse the numbers of the records it flooded before).
    """
    keys = {"is_member": is_member, "signer": signer, "verify": verify, "schedule": schedule,
            "member_index": member_index}
    if state is None:
        return PeerProtocol(peer_id, neighbours, config, **keys), 0
    protocol = PeerProtocol(peer_id, neighbours, config, start_round=state.round + 1,
                            deadline_history=list(state.extra.get("deadline", [])), **keys)
    protocol.convergence.restore(state.extra.get("convergence", {}))
    return protocol, int(state.extra.get("seq", 0))


def checkpoint_weights(state: PeerState) -> dict[str, np.ndarray]:
    """Writable copies of a checkpoint's weights (the node mixes into them in place)."""
    return {k: np.array(v, copy=True) for k, v in state.weights.items()}
