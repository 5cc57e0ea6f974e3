"""Whom a peer dials, when, and what it tells its neighbours: the decisions, without I/O.

A peer keeps a bounded table of the members it knows how to reach (peer id -> multiaddrs),
filled from its ``--bootstrap`` addresses and from the :class:`~gossip.control.PeerExchange`
records its neighbours send. From the table and the set of live links it decides:

* **exchanges**: send its own records to a neighbour when the link comes up, when the table
  has changed since the last send (at most every ``exchange_gap`` seconds), and at least
  every ``exchange_every`` seconds; never once per received message;
* **bootstrap dials**: ``--bootstrap`` members are dialled at once, whatever the target,
  and retried with the backoff below until they have been linked once;
* **wanted dials**: members this peer must be linked to (its one-peer graph's partners,
  :meth:`Discovery.want`) are dialled like bootstrap members as soon as an address is known,
  whatever the target;
* **fill dials**: while fewer than ``target`` allowed peers are connected, dial known but
  unconnected members, in a seeded random order;
* **redials**: a neighbour whose link went down is redialled with exponential backoff and
  jitter (``backoff_initial`` doubling to ``backoff_max``) until it is back or the peer exits.
  A member that fails a fill dial waits out the same backoff before it is tried again.

Only members that ``allows`` (the consortium) admits are ever recorded or dialled, this peer
never records addresses for itself, and a record's addresses must name the record's peer.
A peer's own record (sent by that peer) replaces what others said about it; hearsay is
merged in only while no first-hand record exists. The trio loop around this class is
:mod:`peers.connector`; the clock is passed in (``now``, seconds), so tests need no loop.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from gossip.control import MAX_ADDR_CHARS, MAX_PEER_RECORDS, MAX_RECORD_ADDRS, PeerRecord
from peers.errors import PeerError


@dataclass(frozen=True)
class DiscoveryConfig:
    """Targets, bounds and timings of :class:`Discovery`; checked on construction.

    Raises ``PeerError`` naming the field for a value out of range.
    """

    target: int = 4  #: allowed neighbours to keep connected
    max_peers: int = 256  #: members kept in the table (bootstrap entries are never evicted)
    backoff_initial: float = 0.5  #: first redial delay, seconds
    backoff_max: float = 30.0  #: redial delay cap, seconds
    jitter: float = 0.25  #: each delay is scaled by a uniform factor in [1 - jitter, 1]
    exchange_gap: float = 1.0  #: least time between two sends to one neighbour on changes
    exchange_every: float = 30.0  #: most time between two sends to one neighbour

    def __post_init__(self) -> None:
        if self.target < 1:
            raise PeerError(f"target neighbours must be >= 1, got {self.target}")
        if self.max_peers < 1:
            raise PeerError(f"discovery: max_peers must be >= 1, got {self.max_peers}")
        if not 0 < self.backoff_initial <= self.backoff_max:
            raise PeerError(f"discovery: need 0 < backoff_initial <= backoff_max, got "
                            f"{self.backoff_initial}, {self.backoff_max}")
        if not 0 <= self.jitter < 1:
            raise PeerError(f"discovery: jitter must be in [0, 1), got {self.jitter}")
        if not 0 < self.exchange_gap <= self.exchange_every:
            raise PeerError(f"discovery: need 0 < exchange_gap <= exchange_every, got "
                            f"{self.exchange_gap}, {self.exchange_every}")


@dataclass(frozen=True)
class Dial:
    """Dial ``peer`` at ``addrs`` (in order); ``attempt`` counts earlier failures in a row."""

    peer: str
    addrs: tuple[str, ...]
    redial: bool  #: a lost neighbour, rather than a member dialled to reach the target
    attempt: int


@dataclass(frozen=True)
class MergeResult:
    """What one received record list changed in the table."""

    new: tuple[str, ...] = ()  #: members learnt for the first time
    updated: tuple[str, ...] = ()  #: members whose addresses changed
    refused: int = 0  #: records about non-members, or without an address of their own
    dropped: int = 0  #: records dropped because the table is full


@dataclass
class _Entry:
    addrs: tuple[str, ...]
    first_hand: bool  # from the member itself or from --bootstrap
    pinned: bool  # from --bootstrap: never evicted
    learnt_at: float


@dataclass
class _Backoff:
    failures: int
    due: float


@dataclass
class DiscoveryStats:
    """Counters for the final report and logs."""

    dials: int = 0
    dial_failures: int = 0
    redials: int = 0
    records_refused: int = 0
    records_dropped: int = 0
    exchanges_sent: int = 0
    neighbours_seen: set[str] = field(default_factory=set)


def addr_for(addr: str, peer: str) -> str | None:
    """``addr`` ending in ``/p2p/<peer>`` (appended if missing); None if it names another peer."""
    _head, sep, tail = addr.rpartition("/p2p/")
    if not sep:
        return f"{addr}/p2p/{peer}"
    return addr if tail == peer else None


class Discovery:
    """The peer table and the dial and exchange decisions (see the module docstring).

    Parameters
    ----------
    peer_id:
        This peer.
    allows:
        Whether a peer id is a consortium member (``lambda _: True`` for an open swarm).
    own_addrs:
        The addresses this peer advertises (``--announce`` or its listen addresses), each
        ending in ``/p2p/<peer_id>``; may be empty (then it advertises nothing).
    rng:
        Seeded source of the dial order and the backoff jitter.
    """

    def __init__(self, peer_id: str, allows: Callable[[str], bool], config: DiscoveryConfig,
                 own_addrs: Iterable[str], rng: random.Random) -> None:
        self.peer_id = peer_id
        self._allows = allows
        self.config = config
        self._rng = rng
        own = []
        for addr in own_addrs:
            full = addr_for(addr, peer_id)
            if full is not None and len(full) <= MAX_ADDR_CHARS and full not in own:
                own.append(full)
        self.own_addrs: tuple[str, ...] = tuple(own[:MAX_RECORD_ADDRS])
        self._table: dict[str, _Entry] = {}
        self._connected: set[str] = set()
        self._lost: set[str] = set()
        self._boot: set[str] = set()  # bootstrap members not linked yet
        self._wanted: frozenset[str] = frozenset()  # members to keep linked whatever the target
        self._dialling: set[str] = set()
        self._backoff: dict[str, _Backoff] = {}
        self._version = 0
        self._sent: dict[str, tuple[int, float] | None] = {}
        self.stats = DiscoveryStats()

    # ------------------------------------------------------------ the table
    def add_bootstrap(self, peer: str, addr: str, now: float) -> None:
        """Record a configured member address (pinned: never evicted, first-hand).

        Raises ``PeerError`` for this peer's own id, a peer the consortium does not allow,
        or an address naming another peer.
        """
        if peer == self.peer_id:
            raise PeerError(f"--bootstrap {addr} is this peer itself")
        if not self._allows(peer):
            raise PeerError(f"--bootstrap {addr}: {peer} is not in the consortium")
        full = addr_for(addr, peer)
        if full is None:
            raise PeerError(f"--bootstrap {addr} does not name {peer}")
        entry = self._table.get(peer)
        if peer not in self._connected and peer not in self.stats.neighbours_seen:
            self._boot.add(peer)
        if entry is None:
            self._table[peer] = _Entry((full,), True, True, now)
        else:
            entry.addrs = _bounded((full, *entry.addrs))
            entry.first_hand = entry.pinned = True
        self._version += 1

    def want(self, peers: Iterable[str]) -> None:
        """Keep linked to ``peers`` (allowed members other than this one) whatever the target."""
        self._wanted = frozenset(p for p in peers if p != self.peer_id and self._allows(p))

    def merge(self, sender: str, records: Iterable[PeerRecord], now: float) -> MergeResult:
        """Take in the records a neighbour sent (its own record is first-hand)."""
        new: list[str] = []
        updated: list[str] = []
        refused = dropped = 0
        for record in records:
            peer = record.peer_id
            if peer == self.peer_id:
                continue  # what others know of this peer: nothing to learn, nothing to record
            if not self._allows(peer):
                refused += 1
                continue
            addrs = _bounded(a for a in (addr_for(x, peer) for x in record.addrs) if a is not None)
            if not addrs:
                refused += 1
                continue
            entry = self._table.get(peer)
            if entry is None:
                if len(self._table) >= self.config.max_peers and not self._evict_one():
                    dropped += 1
                    continue
                self._table[peer] = _Entry(addrs, peer == sender, False, now)
                new.append(peer)
                continue
            if peer == sender:
                changed = entry.addrs != addrs
                entry.addrs, entry.first_hand = addrs, True
            elif entry.first_hand:
                changed = False  # the member's own word wins over hearsay
            else:
                merged = _bounded((*addrs, *entry.addrs))
                changed = merged != entry.addrs
                entry.addrs = merged
            if changed:
                entry.learnt_at = now
                updated.append(peer)
        if new or updated:
            self._version += 1
        self.stats.records_refused += refused
        self.stats.records_dropped += dropped
        return MergeResult(tuple(new), tuple(updated), refused, dropped)

    def _evict_one(self) -> bool:
        busy = self._connected | self._lost | self._dialling
        candidates = [(e.first_hand, e.learnt_at, p) for p, e in self._table.items()
                      if not e.pinned and p not in busy]
        if not candidates:
            return False
        del self._table[min(candidates)[2]]  # hearsay before first-hand, oldest first
        return True

    def known(self) -> list[str]:
        """Members in the table, sorted."""
        return sorted(self._table)

    def addrs_of(self, peer: str) -> tuple[str, ...]:
        """The addresses known for ``peer`` (empty if none)."""
        entry = self._table.get(peer)
        return entry.addrs if entry is not None else ()

    def records(self) -> tuple[PeerRecord, ...]:
        """What to tell a neighbour: own record, then connected members, then others (shuffled).

        At most :data:`~gossip.control.MAX_PEER_RECORDS`; with more members known, the
        unconnected ones sent vary from call to call.
        """
        out = [PeerRecord(self.peer_id, self.own_addrs)] if self.own_addrs else []
        linked = sorted(p for p in self._table if p in self._connected)
        others = sorted(p for p in self._table if p not in self._connected)
        self._rng.shuffle(others)
        for peer in (*linked, *others):
            if len(out) >= MAX_PEER_RECORDS:
                break
            out.append(PeerRecord(peer, self._table[peer].addrs))
        return tuple(out)

    # ------------------------------------------------------------ links
    @property
    def connected(self) -> frozenset[str]:
        """Allowed peers with a live link, as last told by :meth:`update_links`."""
        return frozenset(self._connected)

    @property
    def lost(self) -> frozenset[str]:
        """Former neighbours being redialled."""
        return frozenset(self._lost)

    def update_links(self, current: Iterable[str], now: float) -> tuple[list[str], list[str]]:
        """Compare the live links with the last known ones; return (came up, went down), sorted.

        A link that came up is owed an exchange at once; one that went down is redialled
        after the first backoff delay.
        """
        now_up = {p for p in current if p != self.peer_id and self._allows(p)}
        up = sorted(now_up - self._connected)
        down = sorted(self._connected - now_up)
        for peer in up:
            self._connected.add(peer)
            self.stats.neighbours_seen.add(peer)
            self._lost.discard(peer)
            self._boot.discard(peer)
            self._backoff.pop(peer, None)
            self._sent[peer] = None
        for peer in down:
            self._connected.discard(peer)
            self._sent.pop(peer, None)
            self._lost.add(peer)
            self._backoff[peer] = _Backoff(0, now + self.delay(0))
        return up, down

    def delay(self, failures: int) -> float:
        """Backoff before the next try after ``failures`` failures in a row (jittered)."""
        base = min(self.config.backoff_max, self.config.backoff_initial * 2.0 ** min(failures, 64))
        return base * self._rng.uniform(1.0 - self.config.jitter, 1.0)

    # ------------------------------------------------------------ decisions
    def exchanges(self, now: float) -> list[str]:
        """Neighbours to send :meth:`records` to now; they are marked as sent."""
        due = []
        for peer in sorted(self._connected):
            last = self._sent.get(peer)
            if (last is None or now - last[1] >= self.config.exchange_every
                    or (last[0] < self._version and now - last[1] >= self.config.exchange_gap)):
                due.append(peer)
                self._sent[peer] = (self._version, now)
        self.stats.exchanges_sent += len(due)
        return due

    def dials(self, now: float) -> list[Dial]:
        """Dials to start now (lost neighbours and bootstrap members first, then towards the target).

        Each is marked in flight until :meth:`dial_done`; a member is never dialled twice
        at once, nor before its backoff has passed, nor without a known address.
        """
        out: list[Dial] = []
        for peer in sorted(self._lost | self._boot | (self._wanted - self._connected)):
            if self._ready(peer, now):
                out.append(self._start(peer, redial=peer in self._lost))
        room = self.config.target - len(self._connected) - len(self._dialling)
        if room > 0:
            candidates = sorted(p for p in self._table if p not in self._connected
                                and p not in self._lost and p not in self._boot and p not in self._wanted
                                and self._ready(p, now))
            self._rng.shuffle(candidates)
            out += [self._start(p, redial=False) for p in candidates[:room]]
        return out

    def _ready(self, peer: str, now: float) -> bool:
        if peer in self._dialling or peer in self._connected or not self.addrs_of(peer):
            return False
        backoff = self._backoff.get(peer)
        return backoff is None or backoff.due <= now

    def _start(self, peer: str, redial: bool) -> Dial:
        self._dialling.add(peer)
        backoff = self._backoff.get(peer)
        self.stats.dials += 1
        self.stats.redials += redial
        return Dial(peer, self._table[peer].addrs, redial, backoff.failures if backoff else 0)

    def dial_done(self, peer: str, ok: bool, now: float) -> float | None:
        """A dial ended; on failure, return the delay before ``peer`` may be tried again."""
        self._dialling.discard(peer)
        if ok:
            self._backoff.pop(peer, None)
            return None
        self.stats.dial_failures += 1
        failures = self._backoff[peer].failures + 1 if peer in self._backoff else 1
        wait = self.delay(failures)
        self._backoff[peer] = _Backoff(failures, now + wait)
        return wait

    def next_due(self, now: float) -> float | None:
        """The earliest time :meth:`dials` or :meth:`exchanges` may have something new."""
        def due(peer: str) -> float:
            backoff = self._backoff.get(peer)
            return now if backoff is None else backoff.due

        waiting = [p for p in self._lost | self._boot | (self._wanted - self._connected)
                   if p not in self._dialling and self.addrs_of(p)]
        if self.config.target > len(self._connected) + len(self._dialling):
            waiting += [p for p in self._table if p not in self._connected and p not in self._lost
                        and p not in self._boot and p not in self._dialling]
        times = [due(p) for p in waiting]
        for last in self._sent.values():
            if last is None:
                return now
            times.append(last[1] + (self.config.exchange_gap if last[0] < self._version
                                    else self.config.exchange_every))
        return min(times) if times else None


def _bounded(addrs: Iterable[str]) -> tuple[str, ...]:
    """Distinct addresses in order, at most MAX_RECORD_ADDRS, each at most MAX_ADDR_CHARS."""
    out: list[str] = []
    for addr in addrs:
        if len(addr) <= MAX_ADDR_CHARS and addr not in out:
            out.append(addr)
        if len(out) == MAX_RECORD_ADDRS:
            break
    return tuple(out)
