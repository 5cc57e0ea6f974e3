"""The swarm on a virtual clock: every peer runs ``PeerProtocol`` over a simulated network.

Real training, real encoding, real validation and mixing happen for every peer; only
time is simulated. Each local epoch takes ``train_time`` virtual seconds (times a
straggler's slowdown), control messages and model transfers take the link delay (plus
size over bandwidth), and either can be dropped. Peers crash, come back from their
checkpoint, join late and are cut off from the network for a while as ``FaultConfig``
says. Nothing waits on the wall clock, so a run is a deterministic, seeded loop.
"""

from __future__ import annotations

import heapq
import itertools
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from gossip.codec import WeightsMessage, digest
from gossip.control import decode_control, encode_control
from gossip.errors import CodecError
from swarm.checkpoint import CheckpointStore, PeerState
from swarm.peer_state import accept_transfer, inbox_key, snapshot
from swarm.errors import SwarmError
from swarm.faults import FaultConfig
from swarm.node import SwarmNode
from swarm.partition import Federation
from swarm.protocol import (
    Adopt, Checkpoint, ControlIn, Exit, Fetch, FetchDone, Mix, Mixed, ModelReady, Offer,
    PeerProtocol, ProtocolConfig, SendControl, Stop, Train, TimerFired,
)
from swarm.training import Trainer

#: ``progress(done_rounds_of_slowest_live_peer, max_rounds)``
ProgressFn = Callable[[int, int], None]


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
class _Peer:
    index: int
    id: str
    node: SwarmNode
    rng_seed: int
    slowdown: float = 1.0
    proto: PeerProtocol | None = None
    alive: bool = False
    incarnation: int = 0
    served: dict[tuple[int, int], tuple[Any, str]] = field(default_factory=dict)
    inbox: dict[tuple[str, int, int], WeightsMessage] = field(default_factory=dict)
    degrees: dict[str, int] = field(default_factory=dict)
    timer_at: float | None = None
    checkpoint: PeerState | None = None
    run: PeerRun = field(default_factory=lambda: PeerRun(-1))


class VirtualSwarm:
    """Runs the protocol-driven swarm arm on a virtual clock (see the module docstring)."""

    def __init__(
        self,
        trainer: Trainer,
        federation: Federation,
        topology: Mapping[int, list[int]],
        initial: Mapping[str, np.ndarray],
        protocol: ProtocolConfig,
        faults: FaultConfig,
        *,
        seed: int,
        train_seed: Callable[[int, int], int],
        float16: bool = False,
        sample_weighted: bool = True,
        eval_every: int = 1,
        state_dir: Path | None = None,
        max_events: int = 5_000_000,
    ) -> None:
        faults.validate_for(len(federation.sites))
        self.trainer, self.federation, self.topology = trainer, federation, topology
        self.initial = dict(initial)
        self.protocol, self.faults = protocol, faults
        self.seed, self.train_seed = seed, train_seed
        self.eval_every = eval_every
        self.max_events = max_events
        self.rng = np.random.default_rng([seed, 0x5EED])
        n = len(federation.sites)
        self.ids = [f"peer-{i}" for i in range(n)]
        slow = set(self.rng.choice(n, size=faults.stragglers, replace=False).tolist()) if faults.stragglers else set()
        self.peers: list[_Peer] = []
        for i in range(n):
            node = SwarmNode(self.ids[i], trainer.train, federation.sites[i].train, trainer.model_id,
                             self.initial, {self.ids[j]: len(topology[j]) for j in topology[i]},
                             float16=float16, sample_weighted=sample_weighted)
            peer = _Peer(i, self.ids[i], node, rng_seed=i, slowdown=faults.slowdown if i in slow else 1.0)
            peer.run = PeerRun(i, straggler=i in slow)
            self.peers.append(peer)
        self.stores = ({i: CheckpointStore(state_dir / self.ids[i]) for i in range(n)}
                       if state_dir is not None else None)
        self.crashes = {c.peer: c for c in faults.crashes}
        self.late = {lj.peer: lj for lj in faults.late}
        self.cuts = {c.peer: c for c in faults.cuts}
        self.cut_now: set[int] = set()  # peers whose links carry nothing at the moment
        self.cut_over: set[int] = set()
        self.restarted: set[int] = set()
        self.now = 0.0
        self._heap: list[tuple[float, int, str, tuple]] = []
        self._seq = itertools.count()
        self.rows: list[dict] = []
        self.events = 0
        self.control_dropped = 0
        self.transfers_dropped = 0
        self.eval_s = 0.0

    # ---------------------------------------------------------------- loop
    def _at(self, when: float, kind: str, *args: Any) -> None:
        heapq.heappush(self._heap, (when, next(self._seq), kind, args))

    def run(self, progress: ProgressFn | None = None) -> list[PeerRun]:
        """Run until every live peer has exited; return each peer's story."""
        for peer in self.peers:
            if peer.index not in self.late:
                self._start(peer, fresh=True)
        last_reported = -1
        while self._heap:
            when, _, kind, args = heapq.heappop(self._heap)
            self.now = max(self.now, when)
            self.events += 1
            if self.events > self.max_events:
                raise SimulationStalled(f"more than {self.max_events} events by t={self.now:.1f}s")
            getattr(self, f"_ev_{kind}")(*args)
            if progress is not None:
                done = self._slowest_live_round()
                if done != last_reported:
                    last_reported = done
                    progress(done, self.protocol.convergence.max_rounds)
            if all(p.run.exited or not p.alive for p in self.peers if p.alive or p.index not in self.late):
                if all(p.run.exited for p in self.peers if p.alive):
                    break
        return [p.run for p in self.peers]

    def _slowest_live_round(self) -> int:
        rounds = [p.run.last_round + 1 for p in self.peers if p.alive]
        return min(rounds) if rounds else 0

    def _swarm_round(self) -> int:
        """The highest round of a live peer that is not cut off (a cut-off peer's rounds are its own)."""
        rounds = [p.proto.round for p in self.peers
                  if p.alive and p.proto is not None and p.index not in self.cut_now]
        return max(rounds) if rounds else 0

    # ---------------------------------------------------------------- life cycle
    def _start(self, peer: _Peer, fresh: bool) -> None:
        state = None
        if not fresh:
            state = self.stores[peer.index].load_latest(peer.id) if self.stores else peer.checkpoint
        start_round, history = 0, None
        if state is not None:
            peer.node.weights = {k: np.array(v, copy=True) for k, v in state.weights.items()}
            start_round = state.round + 1
            history = list(state.extra.get("deadline", []))
        elif not fresh or peer.index in self.late:
            peer.node.weights = {k: np.array(v, copy=True) for k, v in self.initial.items()}
        peer.alive = True
        peer.incarnation += 1
        peer.served.clear()
        peer.inbox.clear()
        peer.timer_at = None
        neighbours = [self.ids[j] for j in self.topology[peer.index]]
        peer.proto = PeerProtocol(peer.id, neighbours, self.protocol, start_round=start_round,
                                  deadline_history=history)
        seq_floor = 0
        if state is not None:
            peer.proto.convergence.restore(state.extra.get("convergence", {}))
            seq_floor = int(state.extra.get("seq", 0))
        self._perform(peer, peer.proto.start(self.now, seq_floor))

    def _crash(self, peer: _Peer) -> None:
        peer.alive = False
        peer.incarnation += 1
        peer.proto = None
        peer.run.crashed_at = self.now

    def _revive_due(self) -> None:
        swarm_round = self._swarm_round()
        for idx, crash in self.crashes.items():
            peer = self.peers[idx]
            if (crash.back_at is not None and not peer.alive and idx not in self.restarted
                    and peer.run.crashed_at is not None and swarm_round >= crash.back_at):
                self.restarted.add(idx)
                peer.run.restarted_at = self.now
                self._start(peer, fresh=False)
        for idx in [i for i in self.cut_now if swarm_round >= self.cuts[i].back_at]:
            self.cut_now.discard(idx)
            self.cut_over.add(idx)
        for idx, late in self.late.items():
            peer = self.peers[idx]
            if not peer.alive and peer.proto is None and peer.run.joined_at == 0.0 and swarm_round >= late.at_round:
                peer.run.joined_at = self.now
                self._start(peer, fresh=True)

    # ---------------------------------------------------------------- events
    def _feed(self, peer: _Peer, event: Any) -> None:
        if peer.alive and peer.proto is not None:
            self._perform(peer, peer.proto.handle(event, self.now))

    def _ev_timer(self, index: int, incarnation: int, when: float) -> None:
        peer = self.peers[index]
        if peer.incarnation != incarnation or peer.timer_at != when:
            return
        peer.timer_at = None
        self._feed(peer, TimerFired())

    def _ev_trained(self, index: int, incarnation: int, round_: int, result: Any) -> None:
        peer = self.peers[index]
        if peer.incarnation != incarnation or peer.proto is None or peer.proto.phase != (round_, 0):
            return  # crashed, or caught up meanwhile: this training is stale
        peer.node.weights = dict(result.weights)
        peer.node.last_loss = float(result.loss)
        self._offer(peer, round_, 0, loss=float(result.loss))

    def _ev_control(self, index: int, incarnation: int, sender: str, data: bytes) -> None:
        peer = self.peers[index]
        if peer.incarnation != incarnation or not peer.alive:
            return
        try:
            msg = decode_control(data)
        except CodecError:
            if peer.proto is not None:
                peer.proto.stats.bad_control += 1
            return
        self._feed(peer, ControlIn(sender, msg))

    def _ev_fetch_request(self, server: int, client: int, client_inc: int, fetch: Fetch) -> None:
        srv = self.peers[server]
        if not srv.alive:
            return  # no answer: the client's fetch times out
        if self._cut(server, client):
            self.transfers_dropped += 1
            return
        entry = srv.served.get((fetch.round, fetch.step))
        if entry is None or entry[1] != fetch.digest:
            self._at(self.now + self._delay(), "fetch_response", client, client_inc, srv.id, fetch, None)
            return
        payload = entry[0]
        if self._dropped():
            self.transfers_dropped += 1
            return
        srv.run.bytes_sent += len(payload)
        self._at(self.now + self._delay() + len(payload) / self.faults.bandwidth,
                 "fetch_response", client, client_inc, srv.id, fetch, payload)

    def _ev_fetch_response(self, index: int, incarnation: int, sender: str, fetch: Fetch,
                           payload: Any) -> None:
        peer = self.peers[index]
        if peer.incarnation != incarnation or not peer.alive or peer.proto is None:
            return
        ok, reason = False, "not-served"
        if payload is not None:
            msg, reason = accept_transfer(peer.node, fetch, payload)
            if msg is not None:
                peer.inbox[inbox_key(fetch)] = msg
                ok = True
        self._feed(peer, FetchDone(sender, fetch.round, fetch.step, ok, reason))

    # ---------------------------------------------------------------- actions
    def _perform(self, peer: _Peer, actions: list) -> None:
        for action in actions:
            if not peer.alive:
                return
            getattr(self, f"_do_{type(action).__name__.lower()}")(peer, action)
        self._arm_timer(peer)

    def _arm_timer(self, peer: _Peer) -> None:
        if not peer.alive or peer.proto is None:
            return
        when = peer.proto.next_timer()
        if when is None:
            return
        when = max(when, self.now)
        if peer.timer_at is None or when < peer.timer_at or peer.timer_at < self.now:
            peer.timer_at = when
            self._at(when, "timer", peer.index, peer.incarnation, when)

    def _do_train(self, peer: _Peer, action: Train) -> None:
        cut = self.cuts.get(peer.index)
        if cut is not None and action.round >= cut.at_round and peer.index not in self.cut_over:
            self.cut_now.add(peer.index)
        crash = self.crashes.get(peer.index)
        if crash is not None and action.round >= crash.at_round and peer.index not in self.restarted:
            self._crash(peer)
            return
        start = time.perf_counter()
        result = peer.node.train_fn(peer.node.weights, peer.node.data, self.train_seed(peer.index, action.round))
        peer.node.stats.train_s += time.perf_counter() - start
        jitter = 1.0 + self.faults.train_jitter * (2 * self.rng.random() - 1)
        epochs = self.trainer.config.local_epochs
        duration = self.faults.train_time * epochs * peer.slowdown * jitter
        self._at(self.now + duration, "trained", peer.index, peer.incarnation, action.round, result)

    def _offer(self, peer: _Peer, round_: int, step: int, loss: float | None = None) -> None:
        payload = peer.node.encode_model(round_)
        peer.served[(round_, step)] = (payload, digest(payload))
        for key in [k for k in peer.served if k < (round_ - 2, 0)]:
            del peer.served[key]
        event = ModelReady(round_, step, peer.served[(round_, step)][1], len(payload),
                           len(peer.node.data), loss)
        self._perform(peer, peer.proto.handle(event, self.now))

    def _do_offer(self, peer: _Peer, action: Offer) -> None:
        self._offer(peer, action.round, action.step)

    def _do_sendcontrol(self, peer: _Peer, action: SendControl) -> None:
        data = encode_control(action.msg)
        peer.run.bytes_sent += len(data)
        target = self.peers[self.ids.index(action.peer)]
        if self._dropped() or self._cut(peer.index, target.index):
            self.control_dropped += 1
            peer.run.messages_dropped += 1
            return
        self._at(self.now + self._delay(), "control", target.index, target.incarnation, peer.id, data)

    def _do_fetch(self, peer: _Peer, action: Fetch) -> None:
        server = self.ids.index(action.peer)
        if self._dropped() or self._cut(peer.index, server):
            self.transfers_dropped += 1
            return
        degree = peer.proto.announced_degree(action.peer) if peer.proto else None
        if degree is not None:
            peer.degrees[action.peer] = degree
        self._at(self.now + self._delay(), "fetch_request", server, peer.index, peer.incarnation, action)

    def _do_mix(self, peer: _Peer, action: Mix) -> None:
        received = {s: peer.inbox.pop((s, action.round, action.step)) for s in action.senders
                    if (s, action.round, action.step) in peer.inbox}
        for key in [k for k in peer.inbox if k[1:] <= (action.round, action.step) and not k[0].startswith("catch")]:
            del peer.inbox[key]
        degrees = {p: peer.degrees.get(p, d) for p, d in peer.node.neighbour_degrees.items()}
        distance = peer.node.mix(received, degrees, measure=action.final)
        metric = None
        if action.final:
            metric = self._evaluate(peer, action.round, distance)
        self._perform(peer, peer.proto.handle(Mixed(action.round, action.step, distance, metric), self.now))

    def _do_adopt(self, peer: _Peer, action: Adopt) -> None:
        key = ("catch-up:" + action.peer, action.round, -1)
        msg = peer.inbox.pop(key, None)
        if msg is not None:
            peer.node.adopt(msg, action.keep_own)

    def _do_checkpoint(self, peer: _Peer, action: Checkpoint) -> None:
        peer.run.last_round = max(peer.run.last_round, action.round)
        peer.run.rounds_completed = peer.proto.stats.rounds_completed if peer.proto else peer.run.rounds_completed
        state = snapshot(peer.node, peer.proto, action.round)
        if self.stores is not None:
            self.stores[peer.index].save(state)
        peer.checkpoint = state
        self._revive_due()

    def _do_stop(self, peer: _Peer, action: Stop) -> None:
        peer.run.stop_round, peer.run.stop_reason = action.round, action.reason
        peer.run.finish_time = self.now

    def _do_exit(self, peer: _Peer, action: Exit) -> None:
        peer.run.exited = True
        peer.run.stop_round, peer.run.stop_reason = action.round, action.reason

    # ---------------------------------------------------------------- helpers
    def _delay(self) -> float:
        f = self.faults
        return max(0.0, f.delay + f.jitter * (2 * self.rng.random() - 1))

    def _cut(self, a: int, b: int) -> bool:
        """Whether the link between peers ``a`` and ``b`` is down (either end cut off)."""
        return a in self.cut_now or b in self.cut_now

    def _dropped(self) -> bool:
        return self.faults.drop > 0 and self.rng.random() < self.faults.drop

    def _evaluate(self, peer: _Peer, round_: int, distance: float | None) -> float | None:
        """Local validation loss every round (the convergence metric); global test on eval rounds."""
        start = time.perf_counter()
        local = self.trainer.evaluate(peer.node.weights, self.federation.sites[peer.index].test)
        if round_ % self.eval_every == self.eval_every - 1 or round_ == self.protocol.convergence.max_rounds - 1 \
                or (peer.proto is not None and peer.proto.stop_round is not None and round_ >= peer.proto.stop_round):
            glob = self.trainer.evaluate(peer.node.weights, self.federation.global_test)
            self.rows.append({
                "arm": "swarm", "round": round_, "peer": peer.index,
                "loss": _clean(peer.node.last_loss), "accuracy": _clean(glob.accuracy),
                "auroc": _clean(glob.auroc), "local_accuracy": _clean(local.accuracy),
                "local_auroc": _clean(local.auroc), "consensus_distance": distance,
                "bytes_sent": peer.run.bytes_sent, "time": self.now,
            })
        self.eval_s += time.perf_counter() - start
        return _clean(local.loss)


def _clean(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)
