"""A peer's swarm protocol as a state machine without I/O.

Events go in (``handle``), actions come out; the caller performs the actions (train,
encode, send a control message, fetch a model, mix, checkpoint) and reports back with
more events. No ``await``, no sockets, no clock: time is an argument. The virtual-clock
simulation and a real peer's trio driver feed the same machine.

One round = local training, then ``gossip_steps`` exchanges. In each exchange (a
*phase* ``(round, step)``) a peer announces its model by gossip, pulls the announced
models of its neighbours over direct transfers (checked against the announced digest),
and mixes once it has them from a quorum of its live neighbours or its adaptive
deadline passes. A peer that sees a neighbour ``catchup_lag`` rounds ahead adopts that
neighbour's model (keeping an explicit ``stale_weight`` share of its own) and jumps to
the next round instead of replaying the missed ones.

Lost messages are recovered, not waited out: a fetch try times out after the transfer
time learnt from earlier fetches (doubling per retry); a peer missing an announcement
repeats its own to the silent neighbour with backoff, and a peer hearing an announcement
of a phase it has reached answers with its own (or its skip). A phase that times out on
most neighbours lets their late announcements teach the deadline, which would otherwise
only learn from models that arrived in time. Progress records go to neighbours only, at
most ``fanout`` of them per heartbeat in rotation; what the stop rule needs from the whole
swarm travels as aggregates merged along gossip edges (``swarm.membership``,
``swarm.swarm_view``), so a peer's control traffic per round is one announcement per edge and
exchange plus O(fanout) messages, whatever the swarm's size; a silent neighbour the aggregates
still show alive is not suspected (``swarm.neighbourhood``). The stop decision is taken and
spread as in ``swarm.stop_agreement``.

A peer never runs on alone while a neighbour may still come: when nobody can deliver a
phase (every neighbour suspected or more than a round behind, none skipping it), it holds
the phase for up to ``isolation_wait``, and a suspected neighbour heard again ends the
hold. Only a peer in touch with the swarm (not cut off, and not just back) takes a stop
decision for it.

The machine is a thin composer of parts that each own their state (see their modules):
``Neighbourhood`` (links, liveness), ``Membership`` (progress records, members),
``PhaseExchange`` (one phase's announce/fetch/retry/mix, with ``Answers`` for lost
announcements and ``Hold`` for isolation), ``CatchUp`` and ``StopAgreement``. The config,
events, actions and stats live in ``swarm.protocol_types`` and are re-exported here.

Bounds: nothing a neighbour sends grows this machine without bound. Announcements and skips
must name a legal step (``[0, gossip_steps]``, the last one for a stopped peer's final model;
skips ``[0, gossip_steps)``) and a round below ``max_rounds`` (plus ``final_rounds``); at most ``max_pending`` of
later phases are kept per neighbour. An announcement larger than ``max_model_bytes`` (set by
the executor from this peer's own encoded model) is refused before any transfer. Flooded
records are accepted only from members (``Membership.admit``). Refusals count as
``bad_control``; the oversized announcement as a rejection instead (the ``Reject`` action).
"""

from __future__ import annotations

import math
from collections.abc import Callable

from gossip.control import Announce, ControlMessage, Progress, Skip, StopDecision, Summary, forwarded
from gossip.signing import RecordSigner
from swarm.answers import Answers
from swarm.catch_up import CatchUp, skipped_phases
from swarm.convergence import ConvergenceConfig, ConvergenceTracker
from swarm.errors import ConfigError
from swarm.final_tolerance import FinalTolerance
from swarm.hold import Hold
from swarm.membership import Membership, Verify
from swarm.neighbourhood import Neighbourhood
from swarm.phase_exchange import PhaseExchange
from swarm.protocol_types import (
    Action, Adopt, Checkpoint, ControlIn, Event, Exit, Fetch, FetchDone, Mix, Mixed, ModelReady, Offer,
    ProtocolConfig, ProtocolStats, Reject, SendControl, Stop, TimerFired, Train,
)
from swarm.round_counter import AdaptiveDeadline, DeadlineConfig, Liveness, Phase, retry_config
from swarm.stop_agreement import StopAgreement
from swarm.swarm_view import MemberIndex

__all__ = [
    "Action", "Adopt", "Announce", "Checkpoint", "ConfigError", "ControlIn", "ControlMessage",
    "ConvergenceConfig", "ConvergenceTracker", "DeadlineConfig", "Event", "Exit", "Fetch", "FetchDone",
    "Liveness", "Mix", "Mixed", "ModelReady", "Offer", "PeerProtocol", "Phase", "Progress",
    "ProtocolConfig", "ProtocolStats", "Reject", "SendControl", "Skip", "Stop", "StopDecision", "TimerFired",
    "Train", "AdaptiveDeadline", "forwarded", "retry_config",
]


class PeerProtocol:
    """The state machine of one peer (see the module docstring).

    Parameters
    ----------
    peer_id, neighbours:
        This peer and the neighbours it exchanges models with.
    config:
        Protocol settings.
    start_round:
        The first round to run (the checkpointed round + 1 after a restart).
    deadline_history:
        The phase deadline's learnt delays (from a checkpoint).
    is_member:
        Whether a peer id is a swarm member (the consortium's check; None: any id).
    signer, verify:
        Sign this peer's flooded records, check other origins' (None: unsigned, unchecked;
        real peers and the simulation always pass both, see ``gossip.signing``).
    schedule:
        The neighbours to exchange with in each phase, for a time-varying graph
        (``swarm.schedule``); None: all of them.
    member_index:
        A member's index in the swarm's bitmaps: its position in the consortium (None:
        hashed ids, for an open swarm; see ``swarm.swarm_view``).
    """

    def __init__(self, peer_id: str, neighbours: list[str], config: ProtocolConfig,
                 start_round: int = 0, deadline_history: list[float] | None = None,
                 is_member: Callable[[str], bool] | None = None, signer: RecordSigner | None = None,
                 verify: Verify | None = None,
                 schedule: Callable[[Phase], frozenset[str]] | None = None,
                 member_index: MemberIndex | None = None) -> None:
        self.peer_id = peer_id
        self.config = config
        #: largest announced model fetched (None: not known yet); see ``limit_model_bytes``
        self.max_model_bytes: int | None = None
        self.deadline = AdaptiveDeadline(config.deadline, deadline_history or [])
        self.transfer = AdaptiveDeadline(retry_config(config.deadline, config.fetch_timeout))
        self.convergence = ConvergenceTracker(config.convergence, peer_id)
        self.stats = ProtocolStats()
        self.links = Neighbourhood(peer_id, neighbours, config.suspect_after)
        self.liveness = self.links.liveness
        self.membership = Membership(self.links, config, self.convergence, is_member, signer, verify,
                                     member_index)
        # with a fanout below the degree a neighbour's own heartbeat comes only every few beats:
        # a silent neighbour the aggregates still show alive is not suspected (swarm.neighbourhood)
        self.links.vouch(self.membership.is_alive)
        self.answers = Answers(self.deadline, self.transfer)
        self.exchange = PhaseExchange(self.links, self.membership, self.answers,
                                      Hold(config.isolation_wait, self.stats), config, self.stats,
                                      self.deadline, self.transfer, (start_round, 0), schedule)
        self.catch_up = CatchUp(config, self.stats)
        self.stop = StopAgreement(self.links, self.membership, self.convergence, config, self.stats)
        self.tolerance = FinalTolerance(config.final_tolerance, config.final_rounds + 1)

    # ------------------------------------------------------------ public API
    @property
    def phase(self) -> Phase:
        """The current phase ``(round, step)``; it never goes backwards."""
        return self.exchange.phase

    @property
    def round(self) -> int:
        """The current round; it never decreases."""
        return self.exchange.phase[0]

    @property
    def neighbours(self) -> list[str]:
        """The neighbours, sorted."""
        return self.links.peers

    @property
    def stop_round(self) -> int | None:
        """The agreed (or proposed) last round, None while undecided."""
        return self.stop.stop_round

    @property
    def stop_reason(self) -> str:
        """Why the swarm stops ("" while undecided)."""
        return self.stop.stop_reason

    @property
    def stopped_at(self) -> int | None:
        """The round this peer stopped after, None while running."""
        return self.stop.stopped_at

    @property
    def exited(self) -> bool:
        """Whether the peer has left (it then ignores every event)."""
        return self.stop.exited

    @property
    def seq(self) -> int:
        """The last sequence number used (saved in checkpoints, see ``start``)."""
        return self.membership.seq

    def start(self, now: float, seq_floor: int = 0) -> list[Action]:
        """Begin (or resume) at ``start_round``: train, and say hello with a progress record.

        Flooded records are deduplicated by ``(origin, seq)``, so a restarted peer must not
        reuse old sequence numbers: they start above ``seq_floor`` (the checkpointed value)
        and above the clock in milliseconds.
        """
        self.membership.start(now, seq_floor)
        self.links.start(now)
        last = self.stop.last_round
        if self.round > last:
            # restarted after its last round: nothing left to train, just say so and leave
            self.exchange.move_to((last, self.config.gossip_steps - 1))
            self.stop.reached(last, now)
            return [*self.membership.record(self.round, now), Stop(last, "max-rounds")]
        return [Train(self.round), *self.membership.record(self.round, now)]

    def handle(self, event: Event, now: float) -> list[Action]:
        """Feed one event; return the actions to perform, in order (none once exited)."""
        if self.exited:
            return []
        if isinstance(event, ControlIn):
            return self._on_control(event.sender, event.msg, now)
        if isinstance(event, ModelReady):
            return self._on_ready(event, now)
        if isinstance(event, FetchDone):
            return self._on_fetch(event, now)
        if isinstance(event, Mixed):
            return self._on_mixed(event, now)
        if isinstance(event, TimerFired):
            return self._on_timer(now)
        raise TypeError(f"unknown event {event!r}")

    def next_timer(self) -> float | None:
        """When the driver must deliver ``TimerFired`` next (None: nothing scheduled)."""
        if self.exited:
            return None
        times = [self.membership.next_heartbeat, self.membership.next_tick, *self.exchange.timers()]
        if self.stop.exit_at is not None:
            times.append(self.stop.exit_at)
        if self.catch_up.timer < math.inf:
            times.append(self.catch_up.timer)
        return min(times)

    def live_neighbours(self, now: float) -> list[str]:
        """Neighbours not currently suspected."""
        return self.links.live(now)

    def suspected_neighbours(self, now: float) -> list[str]:
        """Neighbours silent for longer than ``suspect_after`` (left out of the quorum)."""
        return self.links.suspected(now)

    def alive_members(self, now: float) -> set[str]:
        """The members (other than this peer) this peer holds something of and knows alive
        (``Membership.alive`` counts the others too, by index; this is for status and tests)."""
        return {m for m in self.membership.known() if self.membership.is_alive(m, now)}

    def limit_model_bytes(self, limit: int) -> None:
        """Refuse announcements of models larger than ``limit`` bytes from now on (the
        executor derives it from this peer's own encoded model of the same model id)."""
        self.max_model_bytes = limit

    def add_neighbour(self, peer: str, now: float) -> None:
        """A new link came up (a peer that dialled in, or one found later): exchange with it too."""
        self.links.add(peer, now)

    def announced_degree(self, peer: str) -> int | None:
        """The degree ``peer`` gave in its latest announcement this phase (for mixing weights)."""
        ann = self.exchange.announced.get(peer)
        return None if ann is None else ann.degree

    def members(self) -> list[str]:
        """Every member this peer has heard of, itself included."""
        return sorted({self.peer_id, *self.membership.known(), *self.neighbours})

    def last_figures(self) -> tuple[float | None, float | None, float | None]:
        """The latest training loss, validation metric and distance to the neighbours' average."""
        return self.membership.loss, self.membership.metric, self.membership.distance

    # ------------------------------------------------------------ rounds
    def _enter(self, phase: Phase, now: float) -> list[Action]:
        """Move to ``phase`` (never backwards) and act on what was buffered for it."""
        self.exchange.enter(phase)
        actions: list[Action] = []
        for sender, ann in self.catch_up.take(phase):
            actions += self.exchange.consider(sender, ann, now)
        return actions + self._check_catch_up(now)

    def _on_ready(self, event: ModelReady, now: float) -> list[Action]:
        stopped_at = self.stop.stopped_at
        if stopped_at is not None:
            if (event.round, event.step) != (stopped_at, self.config.gossip_steps):
                return []
            return self.stop.offer_final(Announce(self.peer_id, event.round, event.step, event.digest,
                                                  event.size, event.samples, len(self.neighbours)))
        if (event.round, event.step) == self.phase and self.exchange.ready_at is None and event.step == 0 \
                and event.loss is not None:
            self.membership.loss = event.loss
        return self.exchange.on_ready(event, now)

    def _on_mixed(self, event: Mixed, now: float) -> list[Action]:
        if (event.round, event.step) != self.phase or not self.exchange.mixing:
            return []
        round_, step = self.phase
        if step + 1 < self.config.gossip_steps:
            return [*self._enter((round_, step + 1), now), Offer(round_, step + 1)]
        self.stats.rounds_completed += 1
        self.membership.metric, self.membership.distance = event.metric, event.distance
        self.convergence.record_round(round_, event.metric, event.distance, now)
        self.tolerance.note(self.peer_id, round_, event.distance)
        actions: list[Action] = [Checkpoint(round_)]
        actions += self._settle(now)
        actions += self.stop.maybe_decide(self.round, now)
        actions += self.membership.record(self.round, now)
        return actions + self._next_round(round_, now)

    def _next_round(self, done: int, now: float) -> list[Action]:
        """After round ``done`` (completed or adopted): stop if it is the last, else train the next."""
        if self.stop.reached(done, now):
            self.exchange.reset()
            # offer the final model as phase (done, gossip_steps): a neighbour far behind
            # catches up to it instead of training the remaining rounds alone
            return [Stop(done, self.stop.stop_reason), Offer(done, self.config.gossip_steps)]
        if self.stop.agreeing(done + 1):
            end = self.stop.end_round
            if end is not None and self.tolerance.settled(self.live_neighbours(now), self.peer_id,
                                                          self.stop.stop_round):
                return self._skip_to_end(done, end, now)
            # the final agreement: the next round only averages (the current weights are its model)
            return self._enter((done + 1, 0), now) + [Offer(done + 1, 0)]
        return self._enter((done + 1, 0), now) + [Train(done + 1)]

    def _skip_to_end(self, done: int, end: int, now: float) -> list[Action]:
        """This peer and its live neighbours are within the final tolerance: skip the final agreement's remaining
        exchanges (telling the neighbours) and stop after ``end``, like every other peer."""
        steps = self.config.gossip_steps
        skipped = skipped_phases((done + 1, 0), end, steps)
        self.exchange.move_to((end, steps - 1))
        self.stats.final_skipped += end - done
        actions: list[Action] = []
        for phase in skipped:
            skip = Skip(self.peer_id, *phase)
            self.answers.remember(phase, skip, self.round)
            actions += self.answers.send(self.neighbours, phase, now, skip)
        return actions + [Checkpoint(end)] + self._next_round(end, now)

    # ------------------------------------------------------------ control
    def _on_control(self, sender: str, msg: ControlMessage, now: float) -> list[Action]:
        if sender not in self.neighbours:
            self.stats.bad_control += 1
            return []
        back = self.links.spoke(sender, now)
        self.membership.heard(sender, now)  # any message over its link: a sign of life
        if not back:
            return self._on_control_from(sender, msg, now)
        self.stats.rejoins_seen += 1
        held = self.exchange.reconnected(sender, now) if self.exchange.hold.held else []
        return held + self._on_control_from(sender, msg, now)

    def _on_control_from(self, sender: str, msg: ControlMessage, now: float) -> list[Action]:
        if isinstance(msg, (Announce, Skip)):
            # a final model is offered as step gossip_steps; a skip is of a step in a round
            steps = self.config.gossip_steps + (1 if isinstance(msg, Announce) else 0)
            if (msg.sender != sender or msg.round >= self.config.round_limit
                    or msg.step >= steps):
                self.stats.bad_control += 1
                return []
            if isinstance(msg, Skip):
                if self.stop.stop_round is not None and msg.round > self.stop.stop_round:
                    self.tolerance.left(sender)  # gone to the end of the final agreement
                return self.exchange.on_skip(sender, (msg.round, msg.step), now)
            limit = self.max_model_bytes
            if limit is not None and msg.size > limit:
                return [Reject(sender, msg.round, "oversized-announcement",
                               f"announced {msg.size} bytes, limit {limit}")]
            return self._on_announce(sender, msg, now)
        if isinstance(msg, Summary):
            if msg.sender != sender:
                self.stats.bad_control += 1
                return []
            out = self.membership.on_summary(sender, msg, now)
            # members newly known alive may let a waiting stop decision be corroborated
            return out + (self._settle(now) if self.stop.proposals else [])
        if isinstance(msg, (Progress, StopDecision)) and not self.membership.admit(msg.origin):
            self.stats.bad_control += 1
            return []
        if isinstance(msg, Progress):
            if msg.round >= self.config.round_limit:  # no member gets there: a lie to push on
                self.stats.bad_control += 1
                return []
            out = self.stop.repoint(sender, msg)
            supported = self.membership.supported_round(self.round)
            forwards = self.membership.on_progress(sender, msg, now)
            if forwards is None:
                return out
            if any(isinstance(a, Reject) for a in forwards):  # a bad signature: nothing changed
                return out + forwards
            self.tolerance.note(msg.origin, msg.round, msg.distance)
            settled = self._settle(now) if self.stop.proposals else []
            # a round newly corroborated may let a buffered far-ahead announcement start a catch-up
            more = self._check_catch_up(now) if self.membership.supported_round(self.round) > supported else []
            return out + forwards + settled + more + self.stop.maybe_decide(self.round, now)
        if isinstance(msg, StopDecision):
            actions, resume = self.stop.on_decision(sender, msg, self.round, now)
            return actions if resume is None else actions + self._next_round(resume, now)
        self.stats.bad_control += 1
        return []

    def _on_announce(self, sender: str, ann: Announce, now: float) -> list[Action]:
        self.membership.saw_round(sender, ann.round)
        phase = (ann.round, ann.step)
        answer = self.answers.answer(sender, phase, now)
        if phase < self.phase:
            self.stats.stale += 1
            self.answers.observe_late(sender, phase, now)
            return answer
        if phase == self.phase and self.stopped_at is None:
            return answer + self.exchange.consider(sender, ann, now)
        self.catch_up.buffer(sender, ann)
        return answer + self._check_catch_up(now)

    # ------------------------------------------------------------ fetches and catch-up
    def _settle(self, now: float) -> list[Action]:
        """Act on a waiting stop decision if this peer's signed view now corroborates it."""
        actions, resume = self.stop.settle(self.round, now)
        return actions if resume is None else actions + self._next_round(resume, now)

    def _check_catch_up(self, now: float) -> list[Action]:
        supported = self.membership.supported_round(self.round)
        return self.catch_up.check(self.round, self.stopped_at is not None, now, supported)

    def _on_fetch(self, event: FetchDone, now: float) -> list[Action]:
        if not self.catch_up.matches(event):
            return self.exchange.on_fetch(event, now)
        adopt = self.catch_up.settle(event, self.round, self.stopped_at is not None)
        if adopt is True:
            return []  # the other sources of the same final model are still on their way
        if adopt is None:
            return self._check_catch_up(now)
        if adopt.others:  # final models of several members: they stopped there, after the final agreement
            self.stop.agree(adopt.round - self.config.final_rounds,
                            f"stopped: final models of {1 + len(adopt.others)} members")
        # tell neighbours not to wait for this peer in the phases it skips
        skipped = skipped_phases(self.phase, adopt.round, self.config.gossip_steps)
        self.exchange.move_to((adopt.round, self.config.gossip_steps - 1))
        actions: list[Action] = [adopt]
        for phase in skipped:
            skip = Skip(self.peer_id, *phase)
            self.answers.remember(phase, skip, self.round)
            actions += self.answers.send(self.neighbours, phase, now, skip)
        actions.append(Checkpoint(adopt.round))
        return actions + self._next_round(adopt.round, now)

    # ------------------------------------------------------------ time
    def _on_timer(self, now: float) -> list[Action]:
        self.stats.suspicions += self.links.new_suspicions(now)
        exit_ = self.stop.on_timer(now)
        if exit_ is not None:
            return [exit_]
        actions: list[Action] = []
        if now >= self.membership.next_heartbeat:
            actions += self.membership.record(self.round, now)
            actions += self._settle(now)
            actions += self.stop.maybe_decide(self.round, now)
            actions += self.stop.repeat()
        elif now >= self.membership.next_tick:
            actions += self.membership.tick(now)
        for expired in self.exchange.expired_fetches(now):
            actions += self._on_fetch(expired, now)
        timed_out = self.catch_up.timed_out(now)
        while timed_out is not None:
            actions += self._on_fetch(timed_out, now)
            timed_out = self.catch_up.timed_out(now)
        if now >= self.catch_up.wake:
            actions += self._check_catch_up(now)
        return actions + self.exchange.on_timer(now)
