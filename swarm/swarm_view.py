"""What one peer knows of the whole swarm, as aggregates merged along gossip edges.

The stop rule needs, from every member of the swarm, whether it is alive and whether its
latest vote is *converged*. Flooding every member's progress record to every peer costs
O(n * degree) messages per peer per heartbeat; instead each peer keeps a few member
bitmaps (bit ``i`` = the member of consortium index ``i``, see ``member_index``) and
exchanges them with its neighbours only, in a :class:`~gossip.control.Summary` of bounded
size (``gossip.bitset``):

* **liveness by epochs.** Time is cut into epochs of one heartbeat. Each peer sets its
  own bit in the current epoch's ``live`` map, and a neighbour's bit when any message comes
  over its link from it (the link authenticates the sender; a record *relayed* by it says
  nothing of the record's origin, which may be long gone), and ORs in its neighbours' maps
  epoch by epoch (a sighting keeps the epoch it was made in, however late it arrives). A
  member is alive if its bit is in one of the last ``window`` epochs (``suspect_after`` /
  ``heartbeat``, rounded up, plus one), so a crashed member stops counting between
  ``suspect_after`` and one heartbeat more after its last sign of life, and a live one keeps
  counting while its sightings reach this peer within ``suspect_after``. A summary carries
  the completed epochs as merged but the current one only as the sender's own sightings (a
  few bits instead of a partly filled map of every member, about n/8 bytes at 1,000
  members): a sighting travels past its first hop once its epoch is over, so it arrives up
  to an epoch older (measured at 1,000 peers, fanout 5: the newest sighting a peer holds of
  a member is 2 or 3 epochs old for 92 % of members, 4 for 0.001 %, in a window of 5; none
  missing). Peers' clocks are not shared: the epoch number is
  merged as a Lamport clock, a neighbour one epoch ahead moves this peer on once half an
  epoch has passed (so nobody can make epochs shorter than half their length), and a peer
  that has merged nothing for a whole window (just started, back from a cut) takes its
  neighbour's epoch as it is.
* **votes as signed records.** A member's vote is its own signed
  :class:`~gossip.control.Progress` record. A peer keeps the latest record of each member
  whose vote is or was *converged* (one per member; votes change rarely: a member votes
  once and takes it back rarely), and its ``voted`` map is the members whose held latest
  record says converged. A neighbour's ``voted`` map is never counted: it only says which
  records the neighbour lacks, and this peer pushes those (at most :data:`MAX_PUSHES` per
  neighbour and tick, anti-entropy: only the difference travels; a pushed vote is taken as
  held until the neighbour's next summary says otherwise). So a bit counts only
  where its origin's signature has been checked, and a member cannot forge another's vote.

Forged ``live`` bits can only keep a member looking alive (which delays a stop, as
withholding one's own vote does, and keeps a crashed neighbour of a peer from being suspected:
that peer then waits for its model each exchange up to the phase deadline, see
``swarm.neighbourhood``); they cannot hide a live member (maps are OR-merged) and
cannot name a non-member (indices are the consortium's). Memory per peer is a few
bitmaps plus at most one record per member that voted; the work per message is a few
integer operations on bitmaps, whatever the swarm's size.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from gossip.bitset import MAX_INDEX_BITS, pack_bits, unpack_bits
from gossip.control import MAX_LIVE_EPOCHS, Progress, Summary

#: most signed vote records pushed to one neighbour per gossip tick
MAX_PUSHES = 8
#: index space of an open swarm (no consortium): member ids are hashed into it
OPEN_INDEX_BITS = 4096

#: a member id's index in the swarm's bitmaps (None: not a member)
MemberIndex = Callable[[str], "int | None"]


def hashed_index(member: str) -> int:
    """An open swarm's index for ``member`` (no consortium order to take it from): a hash into
    :data:`OPEN_INDEX_BITS`. Two members may share an index (about n^2 / 8,192: 1 % at 10
    members); they then share their bits, which an open swarm (anyone may join and vote) can
    afford. A consortium indexes members by its file order and never aliases them."""
    digest = hashlib.blake2b(member.encode("utf-8", "replace"), digest_size=4).digest()
    return int.from_bytes(digest, "little") % OPEN_INDEX_BITS


def ordered_index(members: list[str] | tuple[str, ...]) -> MemberIndex:
    """The index of each of ``members`` by its position (a consortium's peer ids sorted, so
    that every member numbers them alike whatever its file's order; the simulation's peer
    list); None for anyone else."""
    table = {m: i for i, m in enumerate(members[:MAX_INDEX_BITS])}
    return table.get


class SwarmView:
    """Liveness epochs, signed votes and the member bitmaps built from them (module docstring).

    Parameters
    ----------
    self_index:
        This peer's own index.
    epoch_length:
        Seconds per liveness epoch (the protocol's ``heartbeat``).
    window:
        Epochs a sighting counts for (``suspect_after / heartbeat`` rounded up, plus one), at most
        :data:`gossip.control.MAX_LIVE_EPOCHS`.
    """

    def __init__(self, self_index: int, epoch_length: float, window: int) -> None:
        self.self_bit = 1 << self_index
        self.epoch_length = epoch_length
        self.window = max(1, min(window, MAX_LIVE_EPOCHS))
        self.epoch = 0
        self.epoch_start = 0.0
        self.live = [self.self_bit] + [0] * (self.window - 1)  # newest epoch first
        self.direct = self.self_bit  # this epoch's own sightings (``heard``), see ``summary``
        self._last_merge = -float("inf")
        self.voted = 0  # members whose held latest signed record says converged
        self.records: dict[int, Progress] = {}  # the latest signed record of each member that voted
        self.held = 0  # the members in ``records``
        self._theirs: dict[str, int] = {}  # each neighbour's voted map, as it last said

    def start(self, now: float) -> None:
        """Begin the first epoch at ``now``."""
        self.epoch_start = now

    # ------------------------------------------------------------ liveness
    def advance(self, now: float) -> None:
        """Move to the epoch ``now`` falls in (the maps of epochs left behind go)."""
        while now >= self.epoch_start + self.epoch_length:
            self._next_epoch(self.epoch_start + self.epoch_length)

    def _next_epoch(self, start: float) -> None:
        self.epoch, self.epoch_start = self.epoch + 1, start
        self.live = [self.self_bit, *self.live[:-1]]
        self.direct = self.self_bit

    def heard(self, index: int, now: float) -> None:
        """Member ``index`` showed a sign of life itself (a message over its link)."""
        self.advance(now)
        self.live[0] |= 1 << index
        self.direct |= 1 << index

    def alive(self, now: float) -> int:
        """The members (not this peer) seen alive in the last ``window`` epochs."""
        self.advance(now)
        bits = 0
        for epoch in self.live:
            bits |= epoch
        return bits & ~self.self_bit

    def merge(self, sender: str, msg: Summary, now: float) -> bool:
        """Merge a neighbour's summary (already decoded and bounded); True if this peer learnt
        a member it did not know alive. Bitmaps of epochs out of the window are ignored."""
        self.advance(now)
        self._theirs[sender] = unpack_bits(msg.voted)
        before = self.alive(now)
        if msg.epoch > self.epoch + 1 and now - self._last_merge >= self.epoch_length * self.window:
            # just started or back from a cut: take the swarm's epoch as it is
            self.epoch, self.epoch_start = msg.epoch, now
            self.live = [self.live[0] | self.self_bit] + [0] * (self.window - 1)
            self.direct |= self.self_bit
        elif msg.epoch == self.epoch + 1 and now >= self.epoch_start + self.epoch_length / 2:
            self._next_epoch(now)
        elif not self.epoch - self.window < msg.epoch <= self.epoch + 1:
            return False
        # their epoch msg.epoch - i is this peer's slot epoch - (msg.epoch - i); one ahead
        # (too early to move on) lands in the current slot
        shift = self.epoch - msg.epoch
        bits, last = 0, len(msg.live) - 1
        for j, data in enumerate(msg.live):  # oldest first; the current epoch last, as it is
            bits = unpack_bits(data) if j == last else bits ^ unpack_bits(data)  # see ``summary``
            slot = max(0, last - j + shift)
            if slot < self.window:
                self.live[slot] |= bits
        self._last_merge = now
        return bool(self.alive(now) & ~before)

    # ------------------------------------------------------------ votes
    def take(self, index: int, msg: Progress) -> bool:
        """Keep ``msg`` (signed, checked, of member ``index``) if it is that member's newest
        record and says converged or takes back a converged vote; True if the maps changed."""
        held = self.records.get(index)
        if held is not None and held.seq >= msg.seq:
            return False
        if held is None and not msg.converged:
            return False  # nothing to take back: a member that never voted costs nothing
        self.records[index] = msg
        bit = 1 << index
        self.held |= bit
        before = self.voted
        if msg.converged:
            self.voted |= bit
        else:
            self.voted &= ~bit
        return self.voted != before or held is None

    def counted(self, index: int) -> bool:
        """Whether member ``index``'s held latest record says converged."""
        return bool(self.voted >> index & 1)

    def pushes(self, neighbour: str, skip: int = 0) -> list[Progress]:
        """The signed records ``neighbour`` lacks, as its last summary said (at most
        :data:`MAX_PUSHES`, lowest index first; none before it sent a summary), to be sent to
        it now (it is taken as holding the converged ones from then on). ``skip``: members whose
        records are not to be pushed (the neighbour's own, this peer's)."""
        theirs = self._theirs.get(neighbour)
        if theirs is None:
            return []
        # converged records it lacks, and take-backs of converged votes it still holds
        # (only where a record is held: a liar's bits cost no scan)
        differ = ((self.voted & ~theirs) | (theirs & ~self.voted)) & self.held & ~skip
        out: list[Progress] = []
        sent = 0
        while differ and len(out) < MAX_PUSHES:
            low = differ & -differ
            out.append(self.records[low.bit_length() - 1])
            sent |= low
            differ ^= low
        # from now on take the neighbour as holding the converged ones, so that they are not
        # pushed again before its next summary says otherwise (with a fanout below the degree
        # a neighbour's summary comes only every few ticks); a take-back is taken as arrived
        # only when its summary says so: until then it is pushed again, and a later one goes
        # to it at once (``still_counting``)
        self._theirs[neighbour] = theirs | (self.voted & sent)
        return out

    def still_counting(self, index: int) -> list[str]:
        """The neighbours whose last summary still counts member ``index``'s vote: where a
        take-back must go at once (a stop decided on a stale vote cannot be undone)."""
        bit = 1 << index
        return [n for n, theirs in self._theirs.items() if theirs & bit]

    def forget(self, neighbour: str) -> None:
        """Drop what ``neighbour`` said (its link went)."""
        self._theirs.pop(neighbour, None)

    def summary(self, sender: str, now: float, own_vote: bool) -> Summary:
        """This peer's summary for its neighbours (``own_vote``: its own latest vote)."""
        self.advance(now)
        self.live[0] |= self.self_bit
        voted = (self.voted | self.self_bit) if own_vote else (self.voted & ~self.self_bit)
        # the current epoch only as this peer's own sightings (a few bits: itself and the
        # neighbours heard), the completed ones as merged: a partly filled map of every member
        # would cost about one bitmap of n bits per summary; what others sighted this epoch
        # travels on once the epoch is over (a sighting arrives up to an epoch older, within
        # a window of suspect_after / heartbeat + 1 epochs)
        # oldest first, each completed epoch as its XOR with the one before (they differ
        # little: every live member is sighted in each, so they compress to a few bytes), and
        # the current one last as it is (a few bits; as XOR with a partly filled epoch it
        # would cost as much as that epoch)
        done = self.live[:0:-1]
        deltas = [*done[:1], *(new ^ old for old, new in zip(done, done[1:])), self.direct]
        return Summary(sender, self.epoch, tuple(pack_bits(bits) for bits in deltas), pack_bits(voted))
