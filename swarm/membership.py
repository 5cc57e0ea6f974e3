"""Progress records and swarm membership: what this peer knows of its neighbours and, through
aggregates, of the whole swarm.

Each peer sends a small signed progress record (round, figures, convergence vote) every
heartbeat and after each round; records are deduplicated by ``(origin, seq)`` and never
forwarded on receipt. What the stop rule needs from the whole swarm travels as aggregates
merged along gossip edges (``swarm.swarm_view``): a :class:`~gossip.control.Summary` of
member bitmaps each heartbeat (and early, at most every half heartbeat, when this peer
learnt something), plus the signed records a neighbour lacks: the votes (anti-entropy on
the ``voted`` bitmap) and the records of the ``corroboration`` highest rounds. Stop
decisions (rare) are still flooded (``flood``), under the key ``stop:<origin>``.

None of these has to cross every edge at once, so each goes to at most ``fanout`` (K)
neighbours per heartbeat, tick or new top record, in rotation (``swarm.fanout``, one
rotation per stream): a changed record reaches every one of ``d`` neighbours within
``ceil(d / K)`` heartbeats, and a peer's control traffic per round stays O(K) messages of
bounded size (plus the model announcements, one per edge and exchange), whatever its
degree and the swarm's size. Only a vote taken back goes at once to every neighbour that
still counts it. A neighbour thus hears this peer's own record only every ``ceil(d / K)``
heartbeats; liveness does not wait for it: any message over the link is a sign of life
(``heard``), and ``Neighbourhood`` does not suspect a neighbour the aggregates still show
alive (``PeerProtocol`` wires ``is_alive`` into it).

Only members can be origins (``admit``): an id the consortium check ``is_member`` refuses,
one longer than ``MAX_MEMBER_ID_BYTES``, one without a member index, or a new one beyond
``max_members`` is refused, so invented origins cannot grow the member table or the
checkpoint.

Every record speaks for its origin only: this peer signs the records it originates
(``signer``) and checks the origin's signature on every new record before it stores or
pushes it (``verify``); a bad or missing signature is dropped, counted and logged (a
``Reject`` of reason ``bad-signature``) and does not even mark its ``(origin, seq)`` as seen.

What one member claims of itself is only one voice: ``supported_round`` is the round that at
least ``corroboration`` distinct members (this peer included) have reached, kept as the top
``corroboration`` rounds of distinct members with their signed records, which are pushed to
neighbours when they change: O(corroboration) per record (rounds only go up).
"""

from __future__ import annotations

import math
from collections.abc import Callable

from gossip.control import ControlMessage, Progress, StopDecision, Summary, forwarded
from gossip.signing import RecordSigner
from swarm.convergence import ConvergenceTracker
from swarm.fanout import Rotation
from swarm.metrics import finite_or_none
from swarm.neighbourhood import Neighbourhood
from swarm.protocol_types import Action, ProtocolConfig, Reject, SendControl
from swarm.swarm_view import MemberIndex, SwarmView, hashed_index

#: Verifies a flooded record's signature against its origin (None: records are not signed).
Verify = Callable[[Progress | StopDecision], bool]

#: Longest member id accepted as an origin, in UTF-8 bytes (a libp2p Ed25519 id has 52).
MAX_MEMBER_ID_BYTES = 128


class Membership:
    """Sequence numbers, records, the swarm view's aggregates, members' rounds, own figures.

    Parameters
    ----------
    links:
        This peer's neighbourhood (shared with the other parts).
    config:
        Protocol settings (``heartbeat``, ``suspect_after``, ``corroboration``).
    convergence:
        The convergence tracker (this peer's vote and its neighbours').
    is_member:
        Whether a peer id belongs to the swarm (the consortium's check; None: any id).
    signer:
        Signs the records this peer originates (None: unsigned).
    verify:
        Checks a record's signature against its origin (None: every record is taken as signed).
    member_index:
        A member's index in the swarm's bitmaps (the consortium's order; None: hashed ids,
        ``swarm.swarm_view.hashed_index``).
    """

    def __init__(self, links: Neighbourhood, config: ProtocolConfig, convergence: ConvergenceTracker,
                 is_member: Callable[[str], bool] | None = None, signer: RecordSigner | None = None,
                 verify: Verify | None = None, member_index: MemberIndex | None = None) -> None:
        self.links = links
        self.config = config
        self.convergence = convergence
        self.is_member = is_member
        self.signer = signer
        self.verify = verify
        self.index: MemberIndex = member_index or hashed_index
        own = self.index(links.peer_id)
        own = own if own is not None else hashed_index(links.peer_id)
        self.view = SwarmView(own, config.heartbeat, math.ceil(config.suspect_after / config.heartbeat) + 1)
        # own records, summaries (with the pushed votes), top records pushed on: see swarm.fanout
        self._records, self._summaries, self._relays = (Rotation(config.fanout, own) for _ in range(3))
        self._top: list[list] = []  # [round, member] of the highest distinct members, descending
        self._top_records: dict[str, Progress] = {}  # the signed record behind each top member
        self.seq = 0
        self.next_heartbeat = 0.0
        self.next_tick = float("inf")  # an early summary, when this peer learnt something
        self._last_tick = -float("inf")
        self._seen: dict[str, int] = {}
        self._origins: set[str] = set()  # admitted origins of records (see admit)
        self._member_round: dict[str, int] = {}  # neighbours, top and voting members
        self._touch_since: float | None = None  # see in_touch
        self.loss: float | None = None
        self.metric: float | None = None
        self.distance: float | None = None

    def start(self, now: float, seq_floor: int) -> None:
        """Begin above every sequence number used before (``seq_floor``, the clock in ms)."""
        self.seq = max(self.seq, seq_floor, int(now * 1000))
        self._touch_since = now
        self.next_heartbeat = now + self.config.heartbeat
        self.view.start(now)

    def next_seq(self) -> int:
        """A fresh sequence number for a record this peer originates."""
        self.seq += 1
        return self.seq

    def admit(self, origin: str) -> bool:
        """Whether ``origin`` may be the origin of a record: this peer, an origin admitted
        before, or a new member (``is_member``, a short id with an index) while fewer than
        ``max_members`` origins are admitted (it is then admitted)."""
        if origin == self.links.peer_id or origin in self._origins:
            return True
        if (len(origin.encode("utf-8", "replace")) > MAX_MEMBER_ID_BYTES
                or len(self._origins) >= self.config.max_members):
            return False
        if self.is_member is not None and not self.is_member(origin):
            return False
        if self.index(origin) is None:
            return False
        self._origins.add(origin)
        return True

    def mark(self, key: str, seq: int) -> None:
        """Remember ``seq`` as the latest seen under ``key`` (for this peer's own records)."""
        self._seen[key] = seq

    def sign(self, msg: Progress | StopDecision) -> Progress | StopDecision:
        """``msg`` (originated here) signed with this peer's key, if it has one."""
        return msg if self.signer is None else self.signer.sign(msg)

    def authentic(self, msg: Progress | StopDecision, round_: int) -> Reject | None:
        """None if ``msg`` carries its origin's valid signature (or nothing is verified here),
        else the ``Reject`` to count and log."""
        if self.verify is None or self.verify(msg):
            return None
        return Reject(msg.origin, round_, "bad-signature",
                      f"{type(msg).__name__} seq {msg.seq} not signed by its origin")

    def fresh(self, key: str, seq: int) -> bool:
        """Whether ``seq`` is newer than any record seen under ``key``."""
        return seq > self._seen.get(key, 0)

    def flood(self, key: str, seq: int, msg: ControlMessage, sender: str) -> list[Action] | None:
        """A flooded record (a stop decision) arrived from ``sender``: None if seen already,
        else the forwards."""
        if not self.fresh(key, seq):
            return None
        self._seen[key] = seq
        out = forwarded(msg)
        return [SendControl(p, out) for p in self.links.peers if p != sender] if out else []

    # ------------------------------------------------------------ sending
    def record(self, round_: int, now: float) -> list[Action]:
        """This peer's progress record at ``round_`` to the next ``fanout`` neighbours, then a
        gossip tick (``tick``); resets the heartbeat."""
        seq = self.next_seq()
        self.next_heartbeat = now + self.config.heartbeat
        vote = self.convergence.votes.get(self.links.peer_id)
        distance = finite_or_none(self.distance)  # a distance is never negative on the wire
        msg = self.sign(Progress(
            self.links.peer_id, seq, round_,
            finite_or_none(self.loss), finite_or_none(self.metric), None if distance is None else max(0.0, distance),
            bool(vote.converged) if vote else False, self.convergence.streak, 0,
        ))
        return [SendControl(p, msg) for p in self._records.pick(self.links.peers)] + self.tick(now)

    def tick(self, now: float) -> list[Action]:
        """To the next ``fanout`` neighbours: this peer's summary and the signed votes each lacks
        (at most ``MAX_PUSHES``). Top records are pushed when they change (``on_progress``)."""
        self.next_tick = float("inf")
        self._last_tick = now
        summary = self.view.summary(self.links.peer_id, now, self.convergence.voted())
        own = self._bit(self.links.peer_id)
        actions: list[Action] = []
        for peer in self._summaries.pick(self.links.peers):
            actions.append(SendControl(peer, summary))
            actions += [SendControl(peer, record) for record in self.view.pushes(peer, own | self._bit(peer))]
        return actions

    def _learnt(self, now: float) -> None:
        """Something new for the neighbours: tick early, but at most every half heartbeat."""
        self.next_tick = min(self.next_tick, max(now, self._last_tick + self.config.heartbeat / 2))

    def _bit(self, member: str) -> int:
        index = self.index(member)
        return 0 if index is None else 1 << index

    # ------------------------------------------------------------ receiving
    def on_progress(self, sender: str, msg: Progress, now: float) -> list[Action] | None:
        """A progress record arrived: None if it is this peer's own or a duplicate, else the
        rejections or pushes. The origin's own record over the link is a sign of life; any
        authentic record is kept if it is a vote (``SwarmView.take``) or a top round, and a new
        top round is pushed on."""
        if msg.origin == self.links.peer_id or not self.fresh(msg.origin, msg.seq):
            return None
        index = self.index(msg.origin)
        if index is None:
            return None
        forged = self.authentic(msg, msg.round)
        if forged is not None:
            return [forged]
        self._seen[msg.origin] = msg.seq
        changed = self.view.take(index, msg)
        if msg.origin == sender:  # a sign of life; one pushed on by others may be old
            self.view.heard(index, now)
            self.convergence.record_vote(msg.origin, msg.round, msg.converged, msg.streak, now)
        out: list[Action] = []
        if self._mark_round(msg.origin, msg.round, msg):
            # a new top round: push it on at once (a straggler's catch-up waits for it); the
            # top changes about ``corroboration`` times a round, so this stays O(degree)
            # (no early tick for it: a summary does not carry rounds)
            out = [SendControl(p, msg) for p in self._relays.pick(self.links.peers, (sender, msg.origin))]
        elif changed and not msg.converged:
            # a vote taken back: on at once to the neighbours that still count it, not at the
            # next tick, or a peer hops away decides a stop on the stale vote (take-backs are
            # rare, and each crosses an edge only while the far side still counts the vote)
            out = [SendControl(p, msg) for p in self.view.still_counting(index) if p not in (sender, msg.origin)]
        if changed:
            self._learnt(now)
        return out

    def heard(self, neighbour: str, now: float) -> None:
        """A message came over the link from ``neighbour`` itself (the link authenticates its
        sender): a sign of life of ``neighbour``, whatever the message."""
        index = self.index(neighbour)
        if index is not None:
            self.view.heard(index, now)

    def on_summary(self, sender: str, msg: Summary, now: float) -> list[Action]:
        """A neighbour's summary (``sender`` checked by the caller): merge it. A member newly
        known alive is news to tick early for (a member back from a crash must count before
        a stop is decided without it), but not while this peer is just started or back from
        a cut (not ``in_touch``): it then learns most members, decides nothing, and the regular
        ticks carry them (at 1,000 peers the early ticks of the start cost 0.36 summaries to
        each of K neighbours per round)."""
        if self.view.merge(sender, msg, now) and self.in_touch(now):
            self._learnt(now)
        return []

    def saw_round(self, member: str, round_: int) -> None:
        """``member`` (a neighbour, over its link) has reached ``round_`` (rounds only go up)."""
        self._mark_round(member, round_, None)

    def _mark_round(self, member: str, round_: int, record: Progress | None) -> bool:
        """Note ``member`` at ``round_`` (with its signed ``record``, if it came as one); True
        if the top records changed (they are then pushed to the neighbours)."""
        # every member a record or announcement came from (admitted ones only: bounded by
        # max_members); records of far members come only as votes or top rounds
        self._member_round[member] = max(self._member_round.get(member, -1), round_)
        top = self._top
        entry = next((e for e in top if e[1] == member), None)
        if entry is None:
            top.append([round_, member])
        elif round_ > entry[0]:
            entry[0] = round_
        # by round only, stable: a member reaching a round already held by the top ones does
        # not displace them (the top then changes about ``corroboration`` times a round)
        top.sort(key=lambda e: -e[0])
        for _, gone in top[self.config.corroboration:]:
            self._top_records.pop(gone, None)
        del top[self.config.corroboration:]
        kept = next((r for r, m in top if m == member), None)
        held = self._top_records.get(member)
        if record is not None and kept == record.round and (held is None or held.round < record.round):
            self._top_records[member] = record
            return True
        return False

    # ------------------------------------------------------------ what this peer knows
    def supported_round(self, own_round: int) -> int:
        """The highest round that ``corroboration`` distinct members, this peer (at
        ``own_round``) included, have reached; -1 if fewer members are known."""
        rounds = sorted([own_round, *(r for r, m in self._top if m != self.links.peer_id)], reverse=True)
        k = self.config.corroboration
        return rounds[k - 1] if len(rounds) >= k else -1

    def highest_round(self, own_round: int) -> int:
        """The highest round known of any member (this peer at ``own_round`` included)."""
        return max([own_round, *(r for r, _ in self._top), *self._member_round.values()])

    def member_round(self, member: str, default: int) -> int:
        """The highest round known of ``member`` (``default`` if none): a neighbour's, or a
        far member's whose record came as a vote or a top round."""
        return self._member_round.get(member, default)

    def known(self) -> set[str]:
        """Other members this peer holds something of: neighbours heard from, the members of
        the top rounds and those whose signed votes came (bounded by ``max_members``)."""
        return {m for m in self._member_round if m != self.links.peer_id}

    def alive(self, now: float) -> int:
        """The members (other than this peer) seen alive in the last liveness epochs, as a
        bitmap by member index (``swarm.swarm_view``)."""
        return self.view.alive(now)

    def alive_count(self, now: float) -> int:
        """How many other members are alive (see ``alive``)."""
        return self.alive(now).bit_count()

    def is_alive(self, member: str, now: float) -> bool:
        """Whether ``member`` is alive (see ``alive``)."""
        return bool(self.alive(now) & self._bit(member))

    def all_converged(self, now: float) -> bool:
        """Whether this peer and every live member have voted converged, each by a signed
        record this peer holds."""
        return self.convergence.voted() and not (self.alive(now) & ~self.view.voted)

    def in_touch(self, now: float) -> bool:
        """Whether this peer may speak for the swarm: not cut off from its neighbours, and not
        for ``suspect_after`` since it was (or since it started), so that the aggregates of
        every live member have reached it. Just back, it knows only the few members heard so far."""
        if self.links.cut_off(now):
            self._touch_since = None
            return False
        if self._touch_since is None:
            self._touch_since = now
        return now - self._touch_since >= self.config.suspect_after
