"""What one peer knows of the whole swarm, as aggregates merged along gossip edges.

The stop rule needs, from every member of the swarm, whether it is alive and whether its
latest vote is *converged*. Flooding every member's progress record to every peer costs
O(n * degree) messages per peer per heartbeat; instead each peer keeps a few member
bitmaps (bit ``i`` = the member of consortium index ``i``, see ``member_index``) and
exchanges them with its neighbours only, in a :class:`~gossip.control.Summary` of bounded
size (``gossip.bitset``):

* **liveness by epochs.** Time is cut into epochs of ``suspect_after`` seconds. Each peer
  sets its own bit in the current epoch's ``live`` map and ORs in its neighbours' maps of
  the same epoch; a member is alive if its bit is in the current or the previous epoch,
  so a crashed member stops counting one to two epochs after its last sign of life (as it
  was dropped ``suspect_after`` after its last record before). Peers' clocks are not
  shared: the epoch number is merged as a Lamport clock, a neighbour one epoch ahead moves
  this peer on once half an epoch has passed (so nobody can make epochs shorter than half
  their length), and a peer that has merged nothing for an epoch (just started, back from
  a cut) takes its neighbour's epoch as it is.
* **votes as signed records.** A member's vote is its own signed
  :class:`~gossip.control.Progress` record. A peer keeps the latest record of each member
  whose vote is or was *converged* (one per member; votes change rarely: a member votes
  once and takes it back rarely), and its ``voted`` map is the members whose held latest
  record says converged. A neighbour's ``voted`` map is never counted: it only says which
  records the neighbour lacks, and this peer pushes those (at most :data:`MAX_PUSHES` per
  neighbour and tick, anti-entropy: only the difference travels). So a bit counts only
  where its origin's signature has been checked, and a member cannot forge another's vote.

Forged ``live`` bits can only keep a member looking alive (which delays a stop, as
withholding one's own vote does); they cannot hide a live member (maps are OR-merged) and
cannot name a non-member (indices are the consortium's). Memory per peer is a few
bitmaps plus at most one record per member that voted; the work per message is a few
integer operations on bitmaps, whatever the swarm's size.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from gossip.bitset import MAX_INDEX_BITS, pack_bits, unpack_bits
from gossip.control import Progress, Summary

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
        Seconds per liveness epoch (the protocol's ``suspect_after``).
    """

    def __init__(self, self_index: int, epoch_length: float) -> None:
        self.self_bit = 1 << self_index
        self.epoch_length = epoch_length
        self.epoch = 0
        self.epoch_start = 0.0
        self.cur = self.self_bit  # members heard alive this epoch
        self.prev = 0  # ... and the one before
        self._last_merge = -float("inf")
        self.voted = 0  # members whose held latest signed record says converged
        self.once = 0  # members whose signed record said converged at least once
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
        self.prev, self.cur = self.cur, self.self_bit

    def heard(self, index: int, now: float) -> None:
        """Member ``index`` showed a sign of life itself (its own record over the link)."""
        self.advance(now)
        self.cur |= 1 << index

    def alive(self, now: float) -> int:
        """The members (not this peer) alive in the current or the previous epoch."""
        self.advance(now)
        return (self.cur | self.prev) & ~self.self_bit

    def merge(self, sender: str, msg: Summary, now: float) -> bool:
        """Merge a neighbour's summary (already decoded and bounded); True if this peer learnt
        a member it did not know alive. Bitmaps of an epoch this peer is not near are ignored."""
        self.advance(now)
        self._theirs[sender] = unpack_bits(msg.voted)
        live, prev = unpack_bits(msg.live), unpack_bits(msg.prev)
        before = self.cur | self.prev
        if msg.epoch > self.epoch + 1 and now - self._last_merge >= self.epoch_length:
            # just started or back from a cut: take the swarm's epoch as it is
            self.epoch, self.epoch_start = msg.epoch, now
            self.prev, self.cur = prev, self.cur | live
        elif msg.epoch == self.epoch + 1 and now >= self.epoch_start + self.epoch_length / 2:
            self._next_epoch(now)
            self.cur |= live
            self.prev |= prev
        elif msg.epoch == self.epoch:
            self.cur |= live
            self.prev |= prev
        elif msg.epoch == self.epoch - 1:
            self.prev |= live
        else:
            return False
        self._last_merge = now
        return bool((self.cur | self.prev) & ~before)

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
            self.once |= bit
        else:
            self.voted &= ~bit
        return self.voted != before or held is None

    def counted(self, index: int) -> bool:
        """Whether member ``index``'s held latest record says converged."""
        return bool(self.voted >> index & 1)

    def pushes(self, neighbour: str, skip: int = 0) -> list[Progress]:
        """The signed records ``neighbour`` lacks, as its last summary said (at most
        :data:`MAX_PUSHES`, lowest index first; none before it sent a summary). ``skip``:
        members whose records are not to be pushed (the neighbour's own, this peer's)."""
        theirs = self._theirs.get(neighbour)
        if theirs is None:
            return []
        # converged records it lacks, and take-backs of converged votes it still holds
        # (only where a record is held: a liar's bits cost no scan)
        differ = ((self.voted & ~theirs) | (theirs & ~self.voted)) & self.held & ~skip
        out: list[Progress] = []
        while differ and len(out) < MAX_PUSHES:
            low = differ & -differ
            out.append(self.records[low.bit_length() - 1])
            differ ^= low
        return out

    def forget(self, neighbour: str) -> None:
        """Drop what ``neighbour`` said (its link went)."""
        self._theirs.pop(neighbour, None)

    def summary(self, sender: str, now: float, own_vote: bool) -> Summary:
        """This peer's summary for its neighbours (``own_vote``: its own latest vote)."""
        self.advance(now)
        self.cur |= self.self_bit
        voted = (self.voted | self.self_bit) if own_vote else (self.voted & ~self.self_bit)
        return Summary(sender, self.epoch, pack_bits(self.cur), pack_bits(self.prev), pack_bits(voted))
