"""Stop agreement and exit: when the swarm is done, and when a stopped peer may leave.

A peer in touch with the swarm decides to stop once every live member voted converged (by a
signed record it holds; liveness and votes reach it as aggregates, ``swarm.swarm_view``) and
floods a signed ``StopDecision`` (rare: the one record still flooded); every peer adopts the highest proposal, and a peer that
already completed the proposed round counter-proposes its own, so all still stop together.

A decision is one member's word, so a receiver acts on it only when its own view, built from
signed progress records (the votes it holds), corroborates it: every other live member it knows
but at most ``corroboration - 1`` votes converged *now*, and at least ``corroboration``
members do (this peer included). With ``corroboration`` F+1 against F hostile members that is
the honest rule (every live member converged) less the F votes a liar may withhold or fake.
A weaker rule, a strict majority that had voted converged *at least once*, let one member's
signed proposal stop 16 peers at rounds 11-14 instead of 19 (``bench_attacks`` forge-stop:
-0.031 AUROC). Until then
the decision waits (the latest per origin, so at most one per member) and is looked at again
every heartbeat, after each round and on each new record. Once a stop is agreed, a later
proposal (a peer already past it counter-proposing its own round) only moves the stop round,
within the bound below. A decision not signed by its origin is dropped and
counted; one whose stop round lies beyond what the signed progress supports (see
``Membership.supported_round``, plus ``stop_margin + catchup_lag``) is refused. So a hostile
member cannot stop the swarm early or make it run on; it can only withhold its own vote,
which delays the stop up to ``max_rounds``. A later,
higher decision resumes a stopped peer. With ``final_rounds`` (a final agreement), the agreed
round is the last one *trained*: every peer then runs that many rounds of pure averaging and
stops after round ``stop_round + final_rounds``, the same round for all (``end_round``). Stopped, a peer offers its final model (so a
neighbour far behind catches up to it), repeats the decision every heartbeat and lingers
until its live neighbours have reached the stop round (``may_exit``).
"""

from __future__ import annotations

import math

from dataclasses import replace

from gossip.control import Announce, Progress, StopDecision
from swarm.convergence import ConvergenceTracker
from swarm.membership import Membership
from swarm.neighbourhood import Neighbourhood
from swarm.protocol_types import Action, Exit, ProtocolConfig, ProtocolStats, Reject, SendControl


class StopAgreement:
    """The agreed stop round, this peer's decision to repeat, and the stopped/lingering state.

    Parameters
    ----------
    links, membership, convergence:
        The shared neighbourhood, flooded records and votes.
    config, stats:
        Protocol settings and counters.
    """

    def __init__(self, links: Neighbourhood, membership: Membership, convergence: ConvergenceTracker,
                 config: ProtocolConfig, stats: ProtocolStats) -> None:
        self.links, self.membership, self.convergence = links, membership, convergence
        self.config, self.stats = config, stats
        self.stop_round: int | None = None
        self.stop_reason = ""
        self.decision: StopDecision | None = None
        self.stopped_at: int | None = None
        self.exited = False
        self.exit_at: float | None = None
        self._stopped_since = math.inf
        self.final_announce: Announce | None = None  # of the model offered after stopping
        self.proposals: dict[str, StopDecision] = {}  # signed, not yet corroborated: one per origin

    @property
    def last_round(self) -> int:
        """The last round any peer may train."""
        return self.config.convergence.max_rounds - 1

    @property
    def end_round(self) -> int | None:
        """The round this peer stops after: the agreed one plus the final agreement's rounds."""
        return None if self.stop_round is None else self.stop_round + self.config.final_rounds

    def agreeing(self, round_: int) -> bool:
        """Whether ``round_`` is a round of the final agreement: averaging only, no training."""
        return self.stop_round is not None and round_ > self.stop_round

    def reached(self, done: int, now: float) -> bool:
        """Round ``done`` is over (completed or adopted): whether this peer stops at it now."""
        if self.stop_round is None and done >= self.last_round:
            self.stop_round, self.stop_reason = self.last_round, "max-rounds"
        end = self.end_round
        if end is not None and done >= end:
            self.stopped_at = done
            self.exit_at, self._stopped_since = now + self.config.linger, now
            return True
        return False

    def offer_final(self, ann: Announce) -> list[Action]:
        """The final model is servable: announce it to every neighbour (and remember it)."""
        self.final_announce = ann
        return [SendControl(p, ann) for p in self.links.peers]

    def repoint(self, sender: str, msg: Progress) -> list[Action]:
        """A neighbour came back far behind after this peer stopped (e.g. restarted from an old
        checkpoint): point it at the final model again, so it catches up at once instead of
        training the missed rounds alone while the swarm waits for it."""
        final = self.final_announce
        if final is not None and msg.origin == sender and msg.round + self.config.catchup_lag <= final.round:
            # with the decision, so that it can corroborate the stop and take the model whole
            return [SendControl(sender, final), *([] if self.decision is None else [SendControl(sender, self.decision)])]
        return []

    def agree(self, round_: int, reason: str) -> None:
        """Take ``round_`` as the stop round that enough members' final models corroborate."""
        if self.stop_round is None or round_ > self.stop_round:
            self.stop_round, self.stop_reason = round_, reason

    def _propose(self, round_: int, reason: str, sent_reason: str) -> list[Action]:
        """Propose to stop after ``round_`` (``sent_reason`` is the reason as it goes out)."""
        self.stop_round, self.stop_reason = round_, reason
        seq = self.membership.next_seq()
        self.membership.mark(f"stop:{self.links.peer_id}", seq)
        self.decision = self.membership.sign(
            StopDecision(self.links.peer_id, seq, round_, sent_reason, self.config.progress_ttl))
        return [SendControl(p, self.decision) for p in self.links.peers]

    def maybe_decide(self, round_: int, now: float) -> list[Action]:
        """Decide to stop (at ``round_`` or later) if in touch and every live member converged."""
        if self.stop_round is not None or not self.membership.in_touch(now):
            return []
        if not self.convergence.voted():
            return []  # cheap first: the look at every member below runs only once this peer votes
        alive = self.membership.alive_count(now)
        if (self.links.peers and not alive) or not self.membership.all_converged(now):
            return []  # no live member heard of: not in touch either
        reason = f"converged: {alive + 1} live members voted converged"
        # a round only one member claims does not push the stop round out
        supported = self.membership.supported_round(round_) + self.config.convergence.stop_margin
        highest = min(self.membership.highest_round(round_) + self.config.convergence.stop_margin,
                      self.last_round)
        return self._propose(max(min(highest, supported), round_), reason, reason[:200])

    def corroborated(self, now: float) -> bool:
        """Whether this peer's own signed view backs a stop: every other live member it knows
        but at most ``corroboration - 1`` holds a converged vote now, by a signed record this
        peer holds, and at least ``corroboration`` members do (this peer included). Not all of
        them: a member that came back just now and has not voted yet must not keep the others
        from following a decision taken before it was heard. This peer's own vote is not
        required (the check is of what the proposer says of the others). A decision that
        waits is looked at again every heartbeat; one that comes too late for this peer is
        answered by its own counter-proposal (``_adopt``), so every peer still stops after
        the same round."""
        alive = self.membership.alive(now)
        voted = (alive & self.membership.view.voted).bit_count()
        k = self.config.corroboration
        return voted >= alive.bit_count() - (k - 1) and voted + self.convergence.voted() >= k

    def on_decision(self, sender: str, msg: StopDecision, round_: int,
                    now: float) -> tuple[list[Action], int | None]:
        """A stop decision arrived while this peer is in ``round_``: the forwards and answers,
        and the round to resume after if a later decision supersedes the one it stopped at."""
        key = f"stop:{msg.origin}"
        if msg.origin == self.links.peer_id or not self.membership.fresh(key, msg.seq):
            return [], None
        forged = self.membership.authentic(msg, round_)
        if forged is not None:
            return [forged], None
        if msg.stop_round >= self.config.convergence.max_rounds:
            self.stats.bad_control += 1
            return [], None
        bound = (self.membership.supported_round(round_) + self.config.convergence.stop_margin
                 + self.config.catchup_lag)
        if msg.stop_round > bound:
            return [Reject(msg.origin, round_, "unsupported-stop",
                           f"stop round {msg.stop_round} > {bound} supported by signed progress")], None
        actions = self.membership.flood(key, msg.seq, msg, sender) or []
        self.proposals[msg.origin] = msg
        more, resume = self.settle(round_, now)
        return actions + more, resume

    def settle(self, round_: int, now: float) -> tuple[list[Action], int | None]:
        """Act on the highest waiting proposal once this peer's view corroborates it: the
        answers, and the round to resume after if it supersedes the one this peer stopped at."""
        if not self.proposals or (self.stop_round is None and not self.corroborated(now)):
            return [], None  # once a stop is agreed, a later round only moves it (within the bound)
        msg = max(self.proposals.values(), key=lambda d: (d.stop_round, d.origin))
        self.proposals.clear()
        return self._adopt(msg, round_)

    def _adopt(self, msg: StopDecision, round_: int) -> tuple[list[Action], int | None]:
        end = self.end_round
        if self.stopped_at is None and round_ - 1 >= msg.stop_round and (end is None or round_ > end):
            # this peer already completed the proposed round: counter-propose its own current
            # round; every peer adopts the highest proposal, so all still stop together
            return self._propose(round_, msg.reason, msg.reason), None
        if self.stop_round is None or msg.stop_round > self.stop_round:
            self.stop_round, self.stop_reason = msg.stop_round, msg.reason
            self.decision = replace(msg, ttl=self.config.progress_ttl)  # the origin's signature stays
            if self.stopped_at is not None and self.stopped_at < msg.stop_round + self.config.final_rounds:
                # a later decision supersedes ours: resume until the agreed round
                resume = self.stopped_at
                self.stopped_at, self.exit_at, self.final_announce = None, None, None
                return [], resume
        return [], None

    def repeat(self) -> list[Action]:
        """Gossip can lose the decision: repeat it to every neighbour (duplicates are ignored)."""
        return [] if self.decision is None else [SendControl(p, self.decision) for p in self.links.peers]

    def may_exit(self, now: float) -> bool:
        """Whether a stopped peer may leave.

        Only once every live neighbour has reached the stop round too: one that is already
        past it counter-proposes a later round, which resumes this peer. Lingering serves
        neighbours still on their way; when every neighbour, suspected ones included, has
        reached the stop round, the peer leaves after two heartbeats (time for the decision
        to be repeated once more) instead of the whole ``linger``.
        """
        if self.exit_at is None or self.stopped_at is None:
            return False
        reached = {p for p in self.links.peers if self.membership.member_round(p, -1) >= self.stopped_at}
        if now >= self.exit_at:
            return set(self.links.live(now)) <= reached
        return reached == set(self.links.peers) and now >= self._stopped_since + 2 * self.config.heartbeat

    def on_timer(self, now: float) -> Exit | None:
        """Exit if allowed; past ``linger`` with a live neighbour still on its way, look again
        a heartbeat later."""
        if self.exit_at is None or self.stopped_at is None:
            return None
        if self.may_exit(now):
            self.exited = True
            return Exit(self.stopped_at, self.stop_reason)
        if now >= self.exit_at:
            self.exit_at = now + self.config.heartbeat
        return None
