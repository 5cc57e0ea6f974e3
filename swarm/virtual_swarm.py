"""The swarm on a virtual clock: every peer runs ``PeerProtocol`` over a simulated network.

Real training, real encoding, real validation and mixing happen for every peer; only
time is simulated. Each local epoch takes ``train_time`` virtual seconds (times a
straggler's slowdown), control messages and model transfers take the link delay (plus
size over bandwidth), and either can be dropped. Peers crash, come back from their
checkpoint, join late and are cut off from the network for a while as ``FaultConfig``
says. Hostile members (``FaultConfig.attacks``) run ``swarm.poison.HostileNode`` and
``swarm.forgery.HostileExecutor``: the same protocol, with poisoned models and forged
messages. Nothing waits on the wall clock, so a run is a deterministic, seeded loop.
"""

from __future__ import annotations

import heapq
import itertools
import time
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from gossip.signing import sim_keyring
from swarm.choco import Choco
from swarm.attacks import by_peer
from swarm.checkpoint import CheckpointStore, PeerState
from swarm.executor import ExecutorHooks, PeerExecutor, RoundInfo, checkpoint_weights, resume
from swarm.faults import FaultConfig
from swarm.forgery import HostileExecutor
from swarm.metrics import finite_mapping, finite_or_none
from swarm.node import SwarmNode
from swarm.poison import HostileNode
from swarm.partition import Federation
from swarm.peer_state import restore_privacy
from swarm.protocol import Fetch, ProtocolConfig, TimerFired
from swarm.schedule import OnePeerSchedule
from swarm.robust import Aggregation
from swarm.train_pool import PendingTraining, TrainPool
from swarm.training import Trainer
from swarm.virtual_peer import PeerRun, SimSeam, SimulationStalled, VirtualPeer

#: ``progress(done_rounds_of_slowest_live_peer, max_rounds + final agreement rounds)``
ProgressFn = Callable[[int, int], None]


class VirtualSwarm:
    """Runs the protocol-driven swarm arm on a virtual clock (see the module docstring)."""

    #: the executor of a hostile member (tests watch what it forges through a subclass)
    hostile_executor: type[HostileExecutor] = HostileExecutor

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
        q8: bool = False,
        sample_weighted: bool = True,
        aggregation: Aggregation = Aggregation(),
        eval_every: int = 1,
        state_dir: Path | None = None,
        max_events: int = 5_000_000,
        time_varying: bool = False,
        pool: TrainPool | None = None,
        scored: Callable[[int, int], bool] | None = None,
        train_fns: list[Callable[..., Any]] | None = None,
        choco: Choco | None = None,
    ) -> None:
        faults.validate_for(len(federation.sites))
        if protocol.max_members < len(federation.sites):  # every simulated peer is a member
            protocol = replace(protocol, max_members=len(federation.sites))
        self.trainer, self.federation, self.topology = trainer, federation, topology
        self.initial = dict(initial)
        self.protocol, self.faults = protocol, faults
        self.seed, self.train_seed = seed, train_seed
        self.eval_every = eval_every
        #: where trainings run (None: inline, at the training's start); see ``swarm.train_pool``
        self.pool = pool
        #: ``scored(round, peer)``: whether an evaluated round scores this peer (``--eval-peers``)
        self.scored = scored
        self.max_events = max_events
        self.rng = np.random.default_rng([seed, 0x5EED])
        n = len(federation.sites)
        self.ids = [f"peer-{i}" for i in range(n)]
        #: one partner per phase (the one-peer exponential graph) instead of every neighbour
        self.schedule = OnePeerSchedule(tuple(self.ids), protocol.gossip_steps) if time_varying else None
        self.signers, self.verifier = sim_keyring(self.ids, seed)
        hostile = by_peer(faults.attacks)
        #: the hostile members (``--attack``): left out of every honest figure
        self.attackers = frozenset(hostile)
        slow = set(self.rng.choice(n, size=faults.stragglers, replace=False).tolist()) if faults.stragglers else set()
        self.peers: list[VirtualPeer] = []
        for i in range(n):
            make = SwarmNode if i not in hostile else partial(
                HostileNode, attacks=hostile[i], rng=np.random.default_rng([seed, 0xA77AC, i]))
            train = train_fns[i] if train_fns else trainer.train  # a site's own ledger under DP
            node = make(self.ids[i], train, federation.sites[i].train, trainer.model_id,
                        self.initial, {self.ids[j]: len(topology[j]) for j in topology[i]},
                        float16=float16, q8=q8, sample_weighted=sample_weighted, aggregation=aggregation,
                        flat=True, choco=choco)
            peer = VirtualPeer(i, self.ids[i], node, rng_seed=i, slowdown=faults.slowdown if i in slow else 1.0)
            peer.run = PeerRun(i, straggler=i in slow)
            self.peers.append(peer)
        self.index = {peer_id: i for i, peer_id in enumerate(self.ids)}
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
        self._running = 0  # live peers that have not exited: the run ends when none is left
        self._rounds: list[tuple[int, int, int]] = []  # (done rounds, peer, incarnation): lazy min-heap
        self._highest: list[tuple[int, int, int]] = []  # (-current round, peer, incarnation): lazy max-heap
        self.rows: list[dict] = []
        self.events = 0
        self.control_dropped = 0
        self.transfers_dropped = 0
        self.eval_s = 0.0

    # ---------------------------------------------------------------- loop
    def _at(self, when: float, kind: str, *args: Any) -> None:
        heapq.heappush(self._heap, (when, next(self._seq), kind, args))

    def run(self, progress: ProgressFn | None = None) -> list[PeerRun]:
        """Run until every live peer has exited; return each peer's story.

        Each event costs O(log n) besides the peer's own work: the slowest live round
        comes from a heap kept as rounds complete, and the end from a count of live
        peers still running.
        """
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
                    progress(done, self.protocol.round_limit)
            if self._running == 0:
                break
        for peer in self.peers:
            peer.run.bytes_sent = peer.traffic.bytes_sent(peer.served_bytes)
        return [p.run for p in self.peers]

    def _slowest_live_round(self) -> int:
        """Rounds done by the slowest live peer (0 when none is live)."""
        heap = self._rounds
        while heap:
            done, index, incarnation = heap[0]
            peer = self.peers[index]
            if peer.alive and peer.incarnation == incarnation and done == peer.run.last_round + 1:
                return done
            heapq.heappop(heap)  # stale: the peer moved on, crashed or restarted
        return 0

    def _track_round(self, peer: VirtualPeer) -> None:
        heapq.heappush(self._rounds, (peer.run.last_round + 1, peer.index, peer.incarnation))

    def _track_highest(self, peer: VirtualPeer) -> None:
        """After a batch of a peer's actions: note its round if it moved (for ``_swarm_round``)."""
        proto = peer.proto
        if proto is not None and proto.round != peer.round_seen:
            peer.round_seen = proto.round
            heapq.heappush(self._highest, (-proto.round, peer.index, peer.incarnation))

    def _swarm_round(self) -> int:
        """The highest round of a live peer that is not cut off (a cut-off peer's rounds are its
        own), from a lazy max-heap kept as rounds complete: O(log n) amortised, not a scan."""
        heap, cut = self._highest, []
        best = 0
        while heap:
            neg, index, incarnation = heap[0]
            peer = self.peers[index]
            if not (peer.alive and peer.incarnation == incarnation and peer.proto is not None
                    and peer.proto.round == -neg):
                heapq.heappop(heap)  # stale: the peer moved on, crashed or restarted
            elif index in self.cut_now:
                cut.append(heapq.heappop(heap))  # not counted now, but kept for after the cut
            else:
                best = -neg
                break
        for entry in cut:
            heapq.heappush(heap, entry)
        return best

    # ---------------------------------------------------------------- life cycle
    def _start(self, peer: VirtualPeer, fresh: bool) -> None:
        state = None
        if not fresh:
            state = self.stores[peer.index].load_latest(peer.id) if self.stores else peer.checkpoint
        if state is not None:
            peer.node.weights = checkpoint_weights(state)
        elif not fresh or peer.index in self.late:
            peer.node.weights = {k: np.array(v, copy=True) for k, v in self.initial.items()}
        if not fresh:  # what the checkpoint says was spent, as a restarted process would know
            restore_privacy(peer.node, state)
        peer.alive = True
        peer.incarnation += 1
        self._running += 1
        self._track_round(peer)
        peer.served.clear()
        peer.extra_served.clear()
        peer.node.forget_copies()  # a restarted peer has lost its CHOCO copies: they resync
        peer.timer_at = None
        peer.round_seen = -1
        neighbours = [self.ids[j] for j in self.topology[peer.index]]
        protocol, seq_floor = resume(peer.id, neighbours, self.protocol, state,
                                     is_member=self.index.__contains__, member_index=self.index.get,
                                     signer=self.signers[peer.id],
                                     verify=self.verifier,
                                     schedule=None if self.schedule is None else partial(self.schedule.partners, peer.id))
        make = PeerExecutor if not isinstance(peer.node, HostileNode) else partial(
            self.hostile_executor, signer=self.signers[peer.id], members=self.ids)
        peer.exec = make(
            peer.node, protocol, SimSeam(self, peer), evaluate=lambda w: self._evaluate_local(peer, w),
            train_seed=lambda r: self.train_seed(peer.index, r), traffic=peer.traffic,
            store=self.stores[peer.index] if self.stores is not None else None,
            hooks=ExecutorHooks(on_round=lambda info: self._on_round(peer, info),
                                on_checkpoint=lambda state: self._do_checkpoint(peer, state),
                                on_stop=lambda r, why: self._on_stop(peer, r, why),
                                on_exit=lambda r, why: self._on_exit(peer, r, why)),
            batches=lambda actions: self._perform(peer, actions),
        )
        peer.exec.start(seq_floor)

    def _revival_pending(self) -> bool:
        """Whether a crashed peer may still come back, a late one join or a cut end."""
        return bool(self.cut_now) or any(
            c.back_at is not None and c.peer not in self.restarted for c in self.crashes.values()
        ) or any(self.peers[i].run.joined_at == 0.0 and self.peers[i].exec is None for i in self.late)

    def _crash(self, peer: VirtualPeer) -> None:
        peer.alive = False
        peer.incarnation += 1
        self._running -= 1
        if peer.exec is not None:
            peer.exec.halted = True
        peer.exec = None
        peer.run.crashed_at = self.now

    def _revive_due(self) -> None:
        if not self._revival_pending():
            return  # nothing can change: skip the O(n) look at the swarm's round
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
            if not peer.alive and peer.exec is None and peer.run.joined_at == 0.0 and swarm_round >= late.at_round:
                peer.run.joined_at = self.now
                self._start(peer, fresh=True)

    # ---------------------------------------------------------------- events
    def _live(self, index: int, incarnation: int) -> VirtualPeer | None:
        peer = self.peers[index]
        return peer if peer.alive and peer.exec is not None and peer.incarnation == incarnation else None

    def _ev_timer(self, index: int, incarnation: int, when: float) -> None:
        peer = self._live(index, incarnation)
        if peer is None or peer.timer_at != when:
            return
        peer.timer_at = None
        peer.exec.handle(TimerFired())

    def _ev_trained(self, index: int, incarnation: int, round_: int, result: Any) -> None:
        if isinstance(result, PendingTraining):  # submitted to the pool: wait for it only now
            result = result.collect()
        peer = self._live(index, incarnation)
        if peer is not None:
            peer.exec.trained(round_, result)

    def _ev_control(self, index: int, incarnation: int, sender: str, data: bytes) -> None:
        peer = self._live(index, incarnation)
        if peer is not None:
            peer.exec.control(sender, data)

    def _ev_fetch_request(self, server: int, client: int, client_inc: int, fetch: Fetch) -> None:
        srv = self.peers[server]
        if not srv.alive:
            return  # no answer: the client's fetch times out
        if self._cut(server, client):
            self.transfers_dropped += 1
            return
        entry = srv.served.get((fetch.round, fetch.step))
        extra = srv.extra_served.get(fetch.digest)
        if extra is not None and extra[0] == (fetch.round, fetch.step):
            entry = (extra[1], fetch.digest)
        if entry is None or entry[1] != fetch.digest:
            self._at(self.now + self._delay(), "fetch_response", client, client_inc, fetch, None)
            return
        payload = entry[0]
        if self._dropped():
            self.transfers_dropped += 1
            return
        srv.served_bytes += len(payload)
        self._at(self.now + self._delay() + len(payload) / self.faults.bandwidth,
                 "fetch_response", client, client_inc, fetch, payload)

    def _ev_fetch_response(self, index: int, incarnation: int, fetch: Fetch, payload: Any) -> None:
        peer = self._live(index, incarnation)
        if peer is not None:
            peer.exec.fetched(fetch, payload, "" if payload is not None else "not-served")

    # ---------------------------------------------------------------- the seam's side
    def _perform(self, peer: VirtualPeer, actions: list) -> None:
        """Every batch of actions a peer's protocol returns passes here (tests watch it)."""
        if peer.alive and peer.exec is not None:
            peer.exec.perform(actions)
            self._track_highest(peer)

    def arm_timer(self, peer: VirtualPeer) -> None:
        """(Re)arm ``peer``'s protocol timer as a clock event (its seam, after each batch of actions)."""
        if not peer.alive or peer.exec is None:
            return
        when = peer.exec.protocol.next_timer()
        if when is None:
            return
        when = max(when, self.now)
        if peer.timer_at is None or when < peer.timer_at or peer.timer_at < self.now:
            peer.timer_at = when
            self._at(when, "timer", peer.index, peer.incarnation, when)

    def train_peer(self, peer: VirtualPeer, round_: int) -> None:
        """Train ``peer`` for ``round_``: done after its virtual training time (or crash it, as scheduled)."""
        cut = self.cuts.get(peer.index)
        if cut is not None and round_ >= cut.at_round and peer.index not in self.cut_over:
            self.cut_now.add(peer.index)
        crash = self.crashes.get(peer.index)
        if crash is not None and round_ >= crash.at_round and peer.index not in self.restarted:
            self._crash(peer)
            return
        if self.pool is None:
            result = peer.exec.train_now(round_)
        else:  # runs meanwhile (Ray); trainings overlapping in virtual time run in parallel
            result = PendingTraining(peer.node, self.pool.submit(peer.index, peer.node.weights,
                                                                 self.train_seed(peer.index, round_)))
        jitter = 1.0 + self.faults.train_jitter * (2 * self.rng.random() - 1)
        epochs = self.trainer.config.local_epochs
        duration = self.faults.train_time * epochs * peer.slowdown * jitter
        self._at(self.now + duration, "trained", peer.index, peer.incarnation, round_, result)

    def send_from(self, peer: VirtualPeer, to: str, data: bytes) -> None:
        """Deliver ``peer``'s control message to ``to`` after a link delay (or drop it, as the faults say)."""
        target = self.peers[self.index[to]]
        if self._dropped() or self._cut(peer.index, target.index):
            self.control_dropped += 1
            peer.run.messages_dropped += 1
            return
        self._at(self.now + self._delay(), "control", target.index, target.incarnation, peer.id, data)

    def fetch_for(self, peer: VirtualPeer, fetch: Fetch) -> None:
        """Send ``peer``'s fetch request to its server after a link delay (or drop it)."""
        server = self.index[fetch.peer]
        if self._dropped() or self._cut(peer.index, server):
            self.transfers_dropped += 1
            return
        self._at(self.now + self._delay(), "fetch_request", server, peer.index, peer.incarnation, fetch)

    def _do_checkpoint(self, peer: VirtualPeer, state: PeerState) -> None:
        peer.run.last_round = max(peer.run.last_round, state.round)
        peer.run.rounds_completed = peer.proto.stats.rounds_completed if peer.proto else peer.run.rounds_completed
        # in memory only for a peer that will restart from it (a copy of the model per peer otherwise)
        peer.checkpoint = state if peer.index in self.crashes else None
        self._track_round(peer)
        self._revive_due()

    def _on_stop(self, peer: VirtualPeer, round_: int, reason: str) -> None:
        peer.run.stop_round, peer.run.stop_reason = round_, reason
        peer.run.finish_time = self.now

    def _on_exit(self, peer: VirtualPeer, round_: int, reason: str) -> None:
        peer.run.exited = True
        self._running -= 1
        peer.run.stop_round, peer.run.stop_reason = round_, reason

    # ---------------------------------------------------------------- helpers
    def _delay(self) -> float:
        f = self.faults
        return max(0.0, f.delay + f.jitter * (2 * self.rng.random() - 1))

    def _cut(self, a: int, b: int) -> bool:
        """Whether the link between peers ``a`` and ``b`` is down (either end cut off)."""
        return a in self.cut_now or b in self.cut_now

    def _dropped(self) -> bool:
        return self.faults.drop > 0 and self.rng.random() < self.faults.drop

    def _evaluate_local(self, peer: VirtualPeer, weights: Mapping[str, np.ndarray]) -> float | None:
        """The local validation loss after a round (the convergence metric)."""
        start = time.perf_counter()
        peer.local = self.trainer.evaluate(weights, self.federation.sites[peer.index].test)
        self.eval_s += time.perf_counter() - start
        return finite_or_none(peer.local.loss)

    def _on_round(self, peer: VirtualPeer, info: RoundInfo) -> None:
        """On evaluation rounds (and the last), score the peer on the global test set."""
        proto = peer.proto
        if not ((info.round % self.eval_every == self.eval_every - 1
                 and (self.scored is None or self.scored(info.round, peer.index)))
                or info.round == self.protocol.convergence.max_rounds - 1
                or (proto is not None and proto.stop_round is not None and info.round >= proto.stop_round)):
            return
        start = time.perf_counter()
        glob = self.trainer.evaluate(peer.node.weights, self.federation.global_test)
        local = peer.local
        row = {
            "arm": "swarm", "round": info.round, "peer": peer.index,
            "loss": finite_or_none(info.loss), "accuracy": finite_or_none(glob.accuracy),
            "auroc": finite_or_none(glob.auroc), "local_accuracy": finite_or_none(local.accuracy if local else None),
            "local_auroc": finite_or_none(local.auroc if local else None), "consensus_distance": info.distance,
            "bytes_sent": info.bytes_sent, "time": self.now,
        }
        if glob.extra:
            row["extra"] = finite_mapping(glob.extra)
        self.rows.append(row)
        self.eval_s += time.perf_counter() - start

