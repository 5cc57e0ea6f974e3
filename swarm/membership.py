"""Progress records and swarm membership: what this peer knows of every member, near or far.

Each peer floods a small progress record (round, figures, convergence vote) every heartbeat
and after each round; records are deduplicated by ``(origin, seq)`` and forwarded with a
decreasing TTL. From them a peer learns who is in the swarm, how far each member got, who
is still alive, and whether it has been in touch long enough to speak for the swarm.
Stop decisions are flooded the same way (``flood``), under the key ``stop:<origin>``.

Only members can be origins (``admit``): an id the consortium check ``is_member`` refuses,
one longer than ``MAX_MEMBER_ID_BYTES``, or a new one beyond ``max_members`` is refused, so
invented origins cannot grow the member table, the checkpoint or the flood.

Every record speaks for its origin only: this peer signs the records it originates
(``signer``) and checks the origin's signature on every new record before it stores or
forwards it (``verify``); a bad or missing signature is dropped, counted and logged (a
``Reject`` of reason ``bad-signature``) and does not even mark its ``(origin, seq)`` as seen.

What one member claims of itself is only one voice: ``supported_round`` is the round that at
least ``corroboration`` distinct members (this peer included) have reached, kept as the top
``corroboration`` rounds of distinct members, O(corroboration) per record (rounds only go up).
"""

from __future__ import annotations

from collections.abc import Callable

from gossip.control import ControlMessage, Progress, StopDecision, forwarded
from gossip.signing import RecordSigner
from swarm.convergence import ConvergenceTracker
from swarm.metrics import finite_or_none
from swarm.neighbourhood import Neighbourhood
from swarm.protocol_types import Action, ProtocolConfig, Reject, SendControl

#: Verifies a flooded record's signature against its origin (None: records are not signed).
Verify = Callable[[Progress | StopDecision], bool]

#: Longest member id accepted as an origin, in UTF-8 bytes (a libp2p Ed25519 id has 52).
MAX_MEMBER_ID_BYTES = 128


class Membership:
    """Sequence numbers, flood deduplication, members' rounds, liveness of members, own figures.

    Parameters
    ----------
    links:
        This peer's neighbourhood (shared with the other parts).
    config:
        Protocol settings (``heartbeat``, ``suspect_after``, ``progress_ttl``).
    convergence:
        The convergence tracker that records every member's vote.
    is_member:
        Whether a peer id belongs to the swarm (the consortium's check; None: any id).
    signer:
        Signs the records this peer originates (None: unsigned).
    verify:
        Checks a record's signature against its origin (None: every record is taken as signed).
    """

    def __init__(self, links: Neighbourhood, config: ProtocolConfig, convergence: ConvergenceTracker,
                 is_member: Callable[[str], bool] | None = None, signer: RecordSigner | None = None,
                 verify: Verify | None = None) -> None:
        self.links = links
        self.config = config
        self.convergence = convergence
        self.is_member = is_member
        self.signer = signer
        self.verify = verify
        self._top: list[list] = []  # [round, member] of the highest distinct members, descending
        self.seq = 0
        self.next_heartbeat = 0.0
        self._seen: dict[str, int] = {}
        self._origins: set[str] = set()  # admitted origins of flooded records (see admit)
        self._member_round: dict[str, int] = {}
        self._touch_since: float | None = None  # see in_touch
        self.loss: float | None = None
        self.metric: float | None = None
        self.distance: float | None = None

    def start(self, now: float, seq_floor: int) -> None:
        """Begin above every sequence number used before (``seq_floor``, the clock in ms)."""
        self.seq = max(self.seq, seq_floor, int(now * 1000))
        self._touch_since = now
        self.next_heartbeat = now + self.config.heartbeat

    def next_seq(self) -> int:
        """A fresh sequence number for a record this peer originates."""
        self.seq += 1
        return self.seq

    def admit(self, origin: str) -> bool:
        """Whether ``origin`` may be the origin of a flooded record: this peer, an origin
        admitted before, or a new member (``is_member``, a short id) while fewer than
        ``max_members`` origins are admitted (it is then admitted)."""
        if origin == self.links.peer_id or origin in self._origins:
            return True
        if (len(origin.encode("utf-8", "replace")) > MAX_MEMBER_ID_BYTES
                or len(self._origins) >= self.config.max_members):
            return False
        if self.is_member is not None and not self.is_member(origin):
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
        """A flooded record arrived from ``sender``: None if seen already, else the forwards."""
        if not self.fresh(key, seq):
            return None
        self._seen[key] = seq
        out = forwarded(msg)
        return [SendControl(p, out) for p in self.links.peers if p != sender] if out else []

    def record(self, round_: int, now: float) -> list[Action]:
        """This peer's progress record at ``round_`` to every neighbour; resets the heartbeat."""
        seq = self.next_seq()
        self.next_heartbeat = now + self.config.heartbeat
        vote = self.convergence.votes.get(self.links.peer_id)
        distance = finite_or_none(self.distance)  # a distance is never negative on the wire
        msg = self.sign(Progress(
            self.links.peer_id, seq, round_,
            finite_or_none(self.loss), finite_or_none(self.metric), None if distance is None else max(0.0, distance),
            bool(vote.converged) if vote else False, self.convergence.streak, self.config.progress_ttl,
        ))
        return [SendControl(p, msg) for p in self.links.peers]

    def on_progress(self, sender: str, msg: Progress, now: float) -> list[Action] | None:
        """A progress record arrived: None if it is this peer's own or a duplicate, else the
        forwards (after recording the origin's round and vote)."""
        if msg.origin == self.links.peer_id or not self.fresh(msg.origin, msg.seq):
            return None
        forged = self.authentic(msg, msg.round)
        if forged is not None:
            return [forged]
        out = self.flood(msg.origin, msg.seq, msg, sender)
        if out is None:
            return None
        self.saw_round(msg.origin, msg.round)
        self.convergence.record_vote(msg.origin, msg.round, msg.converged, msg.streak, now)
        return out

    def saw_round(self, member: str, round_: int) -> None:
        """``member`` has reached ``round_`` (rounds only go up)."""
        self._member_round[member] = max(self._member_round.get(member, -1), round_)
        top = self._top
        for entry in top:
            if entry[1] == member:
                entry[0] = max(entry[0], round_)
                break
        else:
            top.append([round_, member])
        top.sort(reverse=True)
        del top[self.config.corroboration:]

    def supported_round(self, own_round: int) -> int:
        """The highest round that ``corroboration`` distinct members, this peer (at
        ``own_round``) included, have reached; -1 if fewer members are known."""
        rounds = sorted([own_round, *(r for r, m in self._top if m != self.links.peer_id)], reverse=True)
        k = self.config.corroboration
        return rounds[k - 1] if len(rounds) >= k else -1

    def member_round(self, member: str, default: int) -> int:
        """The highest round known of ``member`` (``default`` if none)."""
        return self._member_round.get(member, default)

    def known(self) -> set[str]:
        """Every other member heard of through progress records or announcements."""
        return set(self._member_round)

    def alive(self, now: float) -> set[str]:
        """Members (other than this peer) whose progress records are recent."""
        alive = set()
        for member in self._member_round:
            vote = self.convergence.votes.get(member)
            if vote is not None and now - vote.seen_at <= self.config.suspect_after:
                alive.add(member)
        return alive

    def in_touch(self, now: float) -> bool:
        """Whether this peer may speak for the swarm: not cut off from its neighbours, and not
        for ``suspect_after`` since it was (or since it started), so that a record from every
        live member has reached it. Just back, it knows only the few members heard so far."""
        if self.links.cut_off(now):
            self._touch_since = None
            return False
        if self._touch_since is None:
            self._touch_since = now
        return now - self._touch_since >= self.config.suspect_after

