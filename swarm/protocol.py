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
only learn from models that arrived in time. Progress records are flooded to
the whole swarm; the stop decision is taken and spread as in ``swarm.convergence``.

A peer never runs on alone while a neighbour may still come: when nobody can deliver a
phase (every neighbour suspected or more than a round behind, none skipping it), it holds
the phase for up to ``isolation_wait``, and a suspected neighbour heard again ends the
hold. Only a peer in touch with the swarm (not cut off, and not just back) takes a stop
decision for it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Union

from gossip.control import Announce, ControlMessage, Progress, Skip, StopDecision, forwarded
from swarm.convergence import ConvergenceConfig, ConvergenceTracker
from swarm.errors import ConfigError
from swarm.round_counter import AdaptiveDeadline, DeadlineConfig, Liveness, Phase, retry_config


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
    linger: float = 5.0
    isolation_wait: float = 300.0
    progress_ttl: int = 16
    convergence: ConvergenceConfig = field(default_factory=ConvergenceConfig)

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
        if not self.isolation_wait >= 0:
            raise ConfigError("isolation_wait", f"must be >= 0, got {self.isolation_wait}")


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
    """Mix the current weights with the fetched models of ``senders``; report ``Mixed``."""

    round: int
    step: int
    senders: tuple[str, ...]
    final: bool


@dataclass(frozen=True)
class Adopt:
    """Catch up: weights := (1 - keep_own) * fetched model of ``peer`` + keep_own * own."""

    peer: str
    round: int
    keep_own: float


@dataclass(frozen=True)
class Checkpoint:
    """Round ``round`` is complete: persist the state atomically."""

    round: int


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


Action = Union[Train, Offer, SendControl, Fetch, Mix, Adopt, Checkpoint, Stop, Exit]


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
    """

    def __init__(self, peer_id: str, neighbours: list[str], config: ProtocolConfig,
                 start_round: int = 0, deadline_history: list[float] | None = None) -> None:
        self.peer_id = peer_id
        self.neighbours = sorted(neighbours)
        self.config = config
        self.phase: Phase = (start_round, 0)
        self.deadline = AdaptiveDeadline(config.deadline, deadline_history or [])
        self.transfer = AdaptiveDeadline(retry_config(config.deadline, config.fetch_timeout))
        self.liveness = Liveness(config.suspect_after)
        self.convergence = ConvergenceTracker(config.convergence, peer_id)
        self.stats = ProtocolStats()
        self.stop_round: int | None = None
        self.stop_reason = ""
        self._decision: StopDecision | None = None
        self.stopped_at: int | None = None
        self.exited = False
        self._seq = 0
        self._seen: dict[str, int] = {}
        self._member_round: dict[str, int] = {}
        self._suspected: set[str] = set()
        self._pending: dict[tuple[str, int, int], Announce] = {}
        self._skips: dict[str, set[Phase]] = {}
        self._own: dict[Phase, Announce | Skip] = {}
        self._late: dict[Phase, tuple[float, set[str]]] = {}
        self._sent: dict[tuple[str, Phase], float] = {}
        self._reset_phase()
        self._catching_up = False
        self._catch_up_ann: Announce | None = None
        self._catch_up_due = math.inf
        self._next_heartbeat = 0.0
        self._exit_at: float | None = None
        self._stopped_since = math.inf
        self._last_loss: float | None = None
        self._last_metric: float | None = None
        self._last_distance: float | None = None
        self._final_announce: Announce | None = None  # of the model offered after stopping
        self._touch_since: float | None = None  # see _in_touch

    # ------------------------------------------------------------ public API
    @property
    def round(self) -> int:
        """The current round; it never decreases."""
        return self.phase[0]

    def start(self, now: float, seq_floor: int = 0) -> list[Action]:
        """Begin (or resume) at ``start_round``: train, and say hello with a progress record.

        Flooded records are deduplicated by ``(origin, seq)``, so a restarted peer must not
        reuse old sequence numbers: they start above ``seq_floor`` (the checkpointed value)
        and above the clock in milliseconds.
        """
        self._seq = max(self._seq, seq_floor, int(now * 1000))
        self._touch_since = now
        for peer in self.neighbours:
            self.liveness.track(peer, now)
        self._next_heartbeat = now + self.config.heartbeat
        last = self.config.convergence.max_rounds - 1
        if self.round > last:
            # restarted after its last round: nothing left to train, just say so and leave
            self.phase = (last, self.config.gossip_steps - 1)
            self.stop_round, self.stop_reason = last, "max-rounds"
            self.stopped_at, self._exit_at, self._stopped_since = last, now + self.config.linger, now
            return [*self._progress(now), Stop(last, "max-rounds")]
        return [Train(self.round), *self._progress(now)]

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
        times = [self._next_heartbeat]
        if self._ready_at is not None and not self._mixing:
            times.append(min(self._deadline_at, self._reannounce_at))
        if self._exit_at is not None:
            times.append(self._exit_at)
        times += [t for t in self._fetch_deadline.values()]
        if self._catching_up:
            times.append(self._catch_up_due)
        return min(times)

    def live_neighbours(self, now: float) -> list[str]:
        """Neighbours not currently suspected."""
        return [p for p in self.neighbours if not self.liveness.is_suspected(p, now)]

    def alive_members(self, now: float) -> set[str]:
        """Swarm members (other than this peer) whose progress records are recent."""
        alive = set()
        for member in self._member_round:
            vote = self.convergence.votes.get(member)
            if vote is not None and now - vote.seen_at <= self.config.suspect_after:
                alive.add(member)
        return alive

    def add_neighbour(self, peer: str, now: float) -> None:
        """A new link came up (a peer that dialled in, or one found later): exchange with it too."""
        if peer != self.peer_id and peer not in self.neighbours:
            self.neighbours = sorted([*self.neighbours, peer])
            self.liveness.track(peer, now)

    def announced_degree(self, peer: str) -> int | None:
        """The degree ``peer`` gave in its latest announcement this phase (for mixing weights)."""
        ann = self._announced.get(peer)
        return None if ann is None else ann.degree

    @property
    def seq(self) -> int:
        """The last sequence number used (saved in checkpoints, see ``start``)."""
        return self._seq

    def members(self) -> list[str]:
        """Every member this peer has heard of, itself included."""
        return sorted({self.peer_id, *self._member_round, *self.neighbours})

    def suspected_neighbours(self, now: float) -> list[str]:
        """Neighbours silent for longer than ``suspect_after`` (left out of the quorum)."""
        return [p for p in self.neighbours if self.liveness.is_suspected(p, now)]

    def last_figures(self) -> tuple[float | None, float | None, float | None]:
        """The latest training loss, validation metric and distance to the neighbours' average."""
        return self._last_loss, self._last_metric, self._last_distance

    # ------------------------------------------------------------ phases
    def _reset_phase(self) -> None:
        self._ready_at: float | None = None
        self._deadline_at = math.inf
        self._reannounce_at = math.inf
        self._extended = False
        self._my_announce: Announce | None = None
        self._fetching: set[str] = set()
        self._fetched: set[str] = set()
        self._retries: dict[str, int] = {}
        self._fetch_deadline: dict[str, float] = {}
        self._fetch_started: dict[str, float] = {}
        self._nudges = 0
        self._announced: dict[str, Announce] = {}
        self._skipped: set[str] = set()
        self._mixing = False
        self._held_since: float | None = None

    def _enter(self, phase: Phase, now: float) -> list[Action]:
        """Move to ``phase`` (never backwards) and act on what was buffered for it."""
        if phase < self.phase:
            raise AssertionError(f"round counter would go backwards: {self.phase} -> {phase}")
        self.phase = phase
        self._reset_phase()
        actions: list[Action] = []
        for peer, phases in list(self._skips.items()):
            if phase in phases:
                self._skipped.add(peer)
            phases -= {p for p in phases if p <= phase}
            if not phases:
                del self._skips[peer]
        for key, ann in list(self._pending.items()):
            if (ann.round, ann.step) == phase:
                del self._pending[key]
                actions += self._consider(key[0], ann, now)
            elif (ann.round, ann.step) < phase:
                del self._pending[key]
        actions += self._check_catch_up(now)
        return actions

    def _on_ready(self, event: ModelReady, now: float) -> list[Action]:
        if self.stopped_at is not None and (event.round, event.step) == (self.stopped_at, self.config.gossip_steps):
            final = Announce(self.peer_id, event.round, event.step, event.digest, event.size, event.samples,
                             len(self.neighbours))
            self._final_announce = final
            return [SendControl(p, final) for p in self.neighbours]
        if (event.round, event.step) != self.phase or self._ready_at is not None or self.stopped_at is not None:
            return []
        self._ready_at = now
        self._deadline_at = now + self.deadline.current()
        self._reannounce_at = now + self._retry_after()
        if event.step == 0:
            self._last_loss = event.loss
        ann = Announce(self.peer_id, event.round, event.step, event.digest, event.size, event.samples,
                       len(self.neighbours))
        self._my_announce = ann
        self._remember(self.phase, ann)
        actions: list[Action] = self._send_own(self.neighbours, self.phase, now)
        return actions + self._maybe_advance(now)

    # ------------------------------------------------------------ announcement recovery
    def _retry_after(self) -> float:
        """One fetch try's timeout and the first wait before asking again: a few round trips."""
        return self.transfer.current()

    def _remember(self, phase: Phase, msg: Announce | Skip) -> None:
        """Keep what this peer said about ``phase`` (its announcement, or a skip) for a while.

        A neighbour still in a recent phase may have lost it; it asks again by announcing
        its own model of that phase, and gets this answer (see ``_answer``). Kept as long as
        the driver serves the models (two rounds back, like the transports' offer caches).
        """
        self._own[phase] = msg
        oldest = (self.round - 2, 0)
        for old in [ph for ph in self._own if ph < oldest]:
            del self._own[old]
        for key in [k for k in self._sent if k[1] < oldest]:
            del self._sent[key]
        for old in [ph for ph in self._late if ph < oldest]:
            del self._late[old]

    def _send_own(self, peers: list[str], phase: Phase, now: float,
                  msg: Announce | Skip | None = None) -> list[Action]:
        msg = msg or self._own[phase]
        for peer in peers:
            self._sent[(peer, phase)] = now
        return [SendControl(p, msg) for p in peers]

    def _answer(self, sender: str, phase: Phase, now: float) -> list[Action]:
        """``sender`` announced its model of ``phase``, which this peer has reached: it is
        in that phase (or waiting in it), so it needs this peer's model (or skip) too.

        Send it again unless it went to ``sender`` less than a retry interval ago: a lost
        announcement is then recovered within a round trip of the neighbour's next
        (re)announcement instead of at the phase deadline. The interval also stops two
        peers answering each other back and forth: an answer arrives within a round trip,
        before the other side's interval has passed.
        """
        if phase not in self._own:
            return []
        last = self._sent.get((sender, phase))
        if last is not None and now - last < self._retry_after():
            return []
        return self._send_own([sender], phase, now)

    def _needed(self, now: float) -> tuple[set[str], int]:
        # wait only for neighbours that can deliver this phase: live, not skipping it, and
        # not known to be more than a round behind (a straggler still training an older
        # round cannot; it will catch up and send Skips instead)
        behind = self.round - 1
        live = {p for p in self.live_neighbours(now) if p not in self._skipped
                and self._member_round.get(p, behind) >= behind}
        return live, math.ceil(self.config.quorum * len(live) - 1e-9)

    def _cut_off(self, now: float) -> bool:
        """Every neighbour is suspected (a peer with none at all is not cut off)."""
        return bool(self.neighbours) and not self.live_neighbours(now)

    def _hold(self, live: set[str], now: float) -> bool:
        """Whether to hold this phase: nobody can deliver it (``live`` is empty) although some
        neighbour has not said to go on without it (a Skip), for less than ``isolation_wait``.

        Rounds alone are worth little and cost a lot. Without a hold, a hospital whose network
        dropped would time out once, find its neighbours a round behind (no longer waited
        for) and run its remaining rounds by itself in seconds, never to mix with the swarm
        again. Held, it waits: neighbours that are behind reach this phase (or catch up and
        skip it), silent ones come back, and after ``isolation_wait`` it trains one round
        alone and holds again.
        """
        if live or all(p in self._skipped for p in self.neighbours):
            self._held_since = None
            return False
        if self._held_since is None:
            self._held_since = now
            self.stats.holds += 1
        return now < self._held_since + self.config.isolation_wait

    def _reconnected(self, sender: str, now: float) -> list[Action]:
        """A suspected neighbour was heard again while this peer held its phase: give the phase
        a fresh deadline and tell the neighbour where this peer is, so that it answers with
        its model of this phase or its later announcements start a catch-up."""
        self._held_since = None
        if self._ready_at is None or self._mixing or self.stopped_at is not None:
            return []
        self._deadline_at = now + self.deadline.current()
        return self._send_own([sender], self.phase, now) if self.phase in self._own else []

    def _maybe_advance(self, now: float, timed_out: bool = False) -> list[Action]:
        if self._ready_at is None or self._mixing or self.stopped_at is not None:
            return []
        live, needed = self._needed(now)
        if self._hold(live, now):
            # wake when the hold runs out (a neighbour heard meanwhile ends it earlier)
            assert self._held_since is not None
            self._deadline_at = self._held_since + self.config.isolation_wait
            return []
        have = len(self._fetched & live)
        if have < needed and not timed_out:
            return []
        if timed_out and have < needed:
            self.stats.phases_timed_out += 1
            if 2 * have < needed:
                # most neighbours missed it: the deadline, not a slow neighbour, is the likely
                # cause. Their late announcements will tell it how long they really took
                # (``_observe_late``); a timeout on a minority teaches nothing, so a
                # straggler or two does not set the pace
                self._late[self.phase] = (self._ready_at, live - self._fetched)
        self.stats.waiting_s += now - self._ready_at
        self._mixing = True
        round_, step = self.phase
        return [Mix(round_, step, tuple(sorted(self._fetched)), step == self.config.gossip_steps - 1)]

    def _on_mixed(self, event: Mixed, now: float) -> list[Action]:
        if (event.round, event.step) != self.phase or not self._mixing:
            return []
        round_, step = self.phase
        if step + 1 < self.config.gossip_steps:
            return [*self._enter((round_, step + 1), now), Offer(round_, step + 1)]
        return self._finish_round(round_, event.distance, event.metric, now)

    def _finish_round(self, round_: int, distance: float | None, metric: float | None,
                      now: float) -> list[Action]:
        self.stats.rounds_completed += 1
        self._last_metric, self._last_distance = metric, distance
        self.convergence.record_round(round_, metric, distance, now)
        actions: list[Action] = [Checkpoint(round_)]
        actions += self._maybe_decide(now)
        actions += self._progress(now)
        return actions + self._next_round(round_, now)

    def _next_round(self, done: int, now: float) -> list[Action]:
        """After round ``done`` (completed or adopted): stop if it is the last, else train the next."""
        if self.stop_round is None and done >= self.config.convergence.max_rounds - 1:
            self.stop_round, self.stop_reason = self.config.convergence.max_rounds - 1, "max-rounds"
        if self.stop_round is not None and done >= self.stop_round:
            self.stopped_at = done
            self._exit_at, self._stopped_since = now + self.config.linger, now
            self._reset_phase()
            # offer the final model as phase (done, gossip_steps): a neighbour far behind
            # catches up to it instead of training the remaining rounds alone
            return [Stop(done, self.stop_reason), Offer(done, self.config.gossip_steps)]
        return self._enter((done + 1, 0), now) + [Train(done + 1)]

    # ------------------------------------------------------------ control
    def _on_control(self, sender: str, msg: ControlMessage, now: float) -> list[Action]:
        if sender not in self.neighbours:
            self.stats.bad_control += 1
            return []
        back = self.liveness.heard(sender, now)
        self._suspected.discard(sender)
        if not back:
            return self._on_control_from(sender, msg, now)
        self.stats.rejoins_seen += 1
        held = self._reconnected(sender, now) if self._held_since is not None else []
        return held + self._on_control_from(sender, msg, now)

    def _on_control_from(self, sender: str, msg: ControlMessage, now: float) -> list[Action]:
        if isinstance(msg, Announce):
            if msg.sender != sender or msg.round >= self.config.convergence.max_rounds:
                self.stats.bad_control += 1
                return []
            return self._on_announce(sender, msg, now)
        if isinstance(msg, Skip):
            if msg.sender != sender or msg.round >= self.config.convergence.max_rounds:
                self.stats.bad_control += 1
                return []
            if (msg.round, msg.step) == self.phase:
                self._skipped.add(sender)
                return self._maybe_advance(now)
            if (msg.round, msg.step) > self.phase:
                self._skips.setdefault(sender, set()).add((msg.round, msg.step))
            return []
        if isinstance(msg, Progress):
            return self._on_progress(sender, msg, now)
        if isinstance(msg, StopDecision):
            return self._on_stop(sender, msg, now)
        self.stats.bad_control += 1
        return []

    def _on_announce(self, sender: str, ann: Announce, now: float) -> list[Action]:
        self._member_round[sender] = max(self._member_round.get(sender, -1), ann.round)
        phase = (ann.round, ann.step)
        answer = self._answer(sender, phase, now)
        if phase < self.phase:
            self.stats.stale += 1
            self._observe_late(sender, phase, now)
            return answer
        if phase == self.phase and self.stopped_at is None:
            return answer + self._consider(sender, ann, now)
        self._pending[(sender, ann.round, ann.step)] = ann
        return answer + self._check_catch_up(now)

    def _observe_late(self, sender: str, phase: Phase, now: float) -> None:
        """A neighbour this peer timed out on in ``phase`` (with most of the others) announced
        it after all: count its real delay.

        Without this the deadline learns only from models that made it in time (and from
        ones already waiting when this peer was behind), so it can only shrink: a peer
        whose deadline became too short times out on most of its neighbours, runs ahead,
        never waits again (they are soon more than a round behind), and the swarm ends up
        catching up to a model it trained alone. A neighbour that never answers (crashed)
        adds nothing.
        """
        late = self._late.get(phase)
        if late is not None and sender in late[1]:
            late[1].discard(sender)
            self.deadline.observe(now - late[0])

    def _consider(self, sender: str, ann: Announce, now: float) -> list[Action]:
        if sender in self._fetched or sender in self._fetching or self._mixing:
            return []
        self._announced[sender] = ann
        return [self._fetch(sender, ann, now)]

    def _fetch(self, sender: str, ann: Announce, now: float, catch_up: bool = False) -> Fetch:
        if catch_up:
            self._catch_up_ann, self._catch_up_due = ann, now + self.config.fetch_timeout
        else:
            self._fetching.add(sender)
            # each retry may take twice as long (as TCP backs off its retransmission
            # timeout): a transfer that is merely slower than usual still gets through
            tries = self._retries.get(sender, 0)
            timeout = min(self.config.fetch_timeout, self._retry_after() * 2 ** tries)
            self._fetch_deadline[sender] = now + timeout
            self._fetch_started[sender] = now
            return Fetch(sender, ann.round, ann.step, ann.digest, ann.size, timeout, catch_up)
        return Fetch(sender, ann.round, ann.step, ann.digest, ann.size, self.config.fetch_timeout, catch_up)

    def _check_catch_up(self, now: float) -> list[Action]:
        if self._catching_up or self.stopped_at is not None:
            return []
        ahead = [a for a in self._pending.values() if a.round >= self.round + self.config.catchup_lag]
        if not ahead:
            return []
        best = max(ahead, key=lambda a: (a.round, a.step, a.sender))
        self._catching_up = True
        return [self._fetch(best.sender, best, now, catch_up=True)]

    def _on_fetch(self, event: FetchDone, now: float) -> list[Action]:
        ann = self._catch_up_ann
        if self._catching_up and ann is not None and (event.sender, event.round, event.step) == (
                ann.sender, ann.round, ann.step):
            return self._on_catch_up_fetch(event, now)
        if (event.round, event.step) != self.phase or event.sender not in self._fetching:
            return []
        self._fetch_deadline.pop(event.sender, None)
        self._fetching.discard(event.sender)
        started = self._fetch_started.pop(event.sender, None)
        if event.ok:
            if started is not None:
                self.transfer.observe(now - started)
            self.liveness.heard(event.sender, now)
            self._fetched.add(event.sender)
            if self._ready_at is not None:
                self.deadline.observe(now - self._ready_at)
            else:
                self.deadline.observe(0.0)
            return self._maybe_advance(now)
        self.stats.fetch_failures += 1
        ann = self._announced.get(event.sender)
        tries = self._retries.get(event.sender, 0)
        if ann is not None and tries < self.config.fetch_retries and now < self._deadline_at:
            self._retries[event.sender] = tries + 1
            return [self._fetch(event.sender, ann, now)]
        self._skipped.add(event.sender)  # give up on it for this phase
        return self._maybe_advance(now)

    def _on_catch_up_fetch(self, event: FetchDone, now: float) -> list[Action]:
        self._catching_up, self._catch_up_ann, self._catch_up_due = False, None, math.inf
        if event.round < self.round + self.config.catchup_lag or self.stopped_at is not None:
            return self._check_catch_up(now)  # the swarm came to us meanwhile
        if not event.ok:
            self.stats.fetch_failures += 1
            self._pending.pop((event.sender, event.round, event.step), None)
            return self._check_catch_up(now)
        self.stats.catch_ups += 1
        old_round = self.round
        target = event.round
        # a stopped neighbour's final model (offered as step ``gossip_steps``) is the swarm's
        # result: taken whole, so a latecomer ends with the model the others ended with
        final = event.step == self.config.gossip_steps
        actions: list[Action] = [Adopt(event.sender, target, 0.0 if final else self.config.stale_weight)]
        # tell neighbours not to wait for this peer in the phases it skips
        skipped = [(r, step) for r in range(old_round, target + 1) for step in range(self.config.gossip_steps)
                   if (r, step) >= self.phase]
        self.phase = (target, self.config.gossip_steps - 1)
        for r, step in skipped:
            skip = Skip(self.peer_id, r, step)
            self._remember((r, step), skip)
            actions += self._send_own(self.neighbours, (r, step), now, skip)
        actions.append(Checkpoint(target))
        self._reset_phase()
        return actions + self._next_round(target, now)

    def _progress(self, now: float) -> list[Action]:
        self._seq += 1
        self._next_heartbeat = now + self.config.heartbeat
        vote = self.convergence.votes.get(self.peer_id)
        record = Progress(
            self.peer_id, self._seq, self.round,
            _finite(self._last_loss), _finite(self._last_metric), _finite(self._last_distance, low=0.0),
            bool(vote.converged) if vote else False, self.convergence.streak, self.config.progress_ttl,
        )
        return [SendControl(p, record) for p in self.neighbours]

    def _on_progress(self, sender: str, msg: Progress, now: float) -> list[Action]:
        final = self._final_announce
        if final is not None and msg.origin == sender and msg.round + self.config.catchup_lag <= final.round:
            # a neighbour came back far behind after this peer stopped (e.g. restarted from an
            # old checkpoint): point it at the final model again, so it catches up at once
            # instead of training the missed rounds alone while the swarm waits for it. Checked
            # before deduplication: the same record may have come round through another peer.
            return [SendControl(sender, final), *self._on_new_progress(sender, msg, now)]
        return self._on_new_progress(sender, msg, now)

    def _on_new_progress(self, sender: str, msg: Progress, now: float) -> list[Action]:
        if msg.origin == self.peer_id or msg.seq <= self._seen.get(msg.origin, 0):
            return []
        self._seen[msg.origin] = msg.seq
        self._member_round[msg.origin] = max(self._member_round.get(msg.origin, -1), msg.round)
        self.convergence.record_vote(msg.origin, msg.round, msg.converged, msg.streak, now)
        out = forwarded(msg)
        actions: list[Action] = [SendControl(p, out) for p in self.neighbours if p != sender] if out else []
        return actions + self._maybe_decide(now)

    def _in_touch(self, now: float) -> bool:
        """Whether this peer may speak for the swarm: not cut off from its neighbours, and not
        for ``suspect_after`` since it was (or since it started), so that a record from every
        live member has reached it. Just back, it knows only the few members heard so far."""
        if self._cut_off(now):
            self._touch_since = None
            return False
        if self._touch_since is None:
            self._touch_since = now
        return now - self._touch_since >= self.config.suspect_after

    def _maybe_decide(self, now: float) -> list[Action]:
        if self.stop_round is not None or not self._in_touch(now):
            return []
        alive = self.alive_members(now)
        if (self.neighbours and not alive) or not self.convergence.all_converged(alive):
            return []  # no recent record from anyone: not in touch either
        self.stop_round = max(self.convergence.stop_round(alive), self.round)
        self.stop_reason = f"converged: {len(alive) + 1} live members voted converged"
        self._seq += 1
        self._seen[f"stop:{self.peer_id}"] = self._seq
        decision = StopDecision(self.peer_id, self._seq, self.stop_round, self.stop_reason[:200],
                                self.config.progress_ttl)
        self._decision = decision
        return [SendControl(p, decision) for p in self.neighbours]

    def _on_stop(self, sender: str, msg: StopDecision, now: float) -> list[Action]:
        key = f"stop:{msg.origin}"
        if msg.seq <= self._seen.get(key, 0):
            return []
        self._seen[key] = msg.seq
        out = forwarded(msg)
        actions: list[Action] = [SendControl(p, out) for p in self.neighbours if p != sender] if out else []
        if msg.stop_round >= self.config.convergence.max_rounds:
            self.stats.bad_control += 1
            return actions
        if self.stopped_at is None and self.round - 1 >= msg.stop_round and (
                self.stop_round is None or self.round > self.stop_round):
            # this peer already completed the proposed round: counter-propose its own current
            # round; every peer adopts the highest proposal, so all still stop together
            self.stop_round, self.stop_reason = self.round, msg.reason
            self._seq += 1
            self._seen[f"stop:{self.peer_id}"] = self._seq
            self._decision = StopDecision(self.peer_id, self._seq, self.round, msg.reason,
                                          self.config.progress_ttl)
            return actions + [SendControl(p, self._decision) for p in self.neighbours]
        if self.stop_round is None or msg.stop_round > self.stop_round:
            self.stop_round, self.stop_reason = msg.stop_round, msg.reason
            self._decision = StopDecision(msg.origin, msg.seq, msg.stop_round, msg.reason,
                                          self.config.progress_ttl)
            if self.stopped_at is not None and self.stopped_at < msg.stop_round:
                # a later decision supersedes ours: resume until the agreed round
                round_ = self.stopped_at
                self.stopped_at, self._exit_at, self._final_announce = None, None, None
                actions += self._next_round(round_, now)
        return actions

    # ------------------------------------------------------------ time
    def _may_exit(self, now: float) -> bool:
        """Whether a stopped peer may leave.

        Only once every live neighbour has reached the stop round too: one that is already
        past it counter-proposes a later round, which resumes this peer. Lingering serves
        neighbours still on their way (a suspected one may be back soon and catch up to the
        final model); when every neighbour, suspected ones included, has reached the stop
        round there is nobody to wait for, and the peer leaves after two heartbeats (time for
        the decision to be repeated once more) instead of the whole ``linger``.
        """
        assert self._exit_at is not None and self.stopped_at is not None
        reached = {p for p in self.neighbours if self._member_round.get(p, -1) >= self.stopped_at}
        if now >= self._exit_at:
            return set(self.live_neighbours(now)) <= reached
        return reached == set(self.neighbours) and now >= self._stopped_since + 2 * self.config.heartbeat

    def _on_timer(self, now: float) -> list[Action]:
        actions: list[Action] = []
        for peer in self.neighbours:
            if self.liveness.is_suspected(peer, now) and peer not in self._suspected:
                self._suspected.add(peer)
                self.stats.suspicions += 1
        if self._exit_at is not None and self.stopped_at is not None:
            if self._may_exit(now):
                self.exited = True
                return [Exit(self.stopped_at, self.stop_reason)]
            if now >= self._exit_at:
                self._exit_at = now + self.config.heartbeat  # a live neighbour is still on its way
        if now >= self._next_heartbeat:
            actions += self._progress(now)
            actions += self._maybe_decide(now)
            if self._decision is not None:
                # gossip can lose the decision: repeat it until exit (duplicates are ignored)
                actions += [SendControl(p, self._decision) for p in self.neighbours]
        for peer, due in list(self._fetch_deadline.items()):
            if now >= due:
                round_, step = self.phase
                actions += self._on_fetch(FetchDone(peer, round_, step, False, "timeout"), now)
        ann = self._catch_up_ann
        if self._catching_up and ann is not None and now >= self._catch_up_due:
            actions += self._on_fetch(FetchDone(ann.sender, ann.round, ann.step, False, "timeout"), now)
        if (self._my_announce is not None and not self._mixing and now >= self._reannounce_at):
            # gossip may have lost our announcement or theirs: repeat ours to the neighbours
            # we have not heard from in this phase, a retry interval after it went out and
            # then with exponential backoff until the deadline. A neighbour that has our
            # model already answers with its own announcement (``_answer``), so a lost
            # announcement costs a round trip or two, not the whole deadline
            self._nudges += 1
            self._reannounce_at = now + self._retry_after() * 2 ** self._nudges
            quiet = [p for p in self.neighbours if p not in self._announced and p not in self._fetched
                     and p not in self._skipped]
            actions += self._send_own(quiet, self.phase, now)
        if self._ready_at is not None and not self._mixing and now >= self._deadline_at:
            in_flight = [due for peer, due in self._fetch_deadline.items() if peer in self._fetching]
            cap = self._ready_at + self.config.deadline.maximum
            if in_flight and not self._extended and max(in_flight) < cap:
                # a transfer (or its retry) is under way: let it finish once, within bounds
                self._extended = True
                self._deadline_at = max(in_flight)
                return actions
            actions += self._maybe_advance(now, timed_out=True)
        else:
            actions += self._maybe_advance(now)
        return actions


def _finite(value: float | None, low: float | None = None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return max(low, value) if low is not None else float(value)
