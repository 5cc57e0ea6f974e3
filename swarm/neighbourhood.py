"""A peer's direct links: who its neighbours are and which of them have gone silent.

Every part of the protocol asks the same questions about the links (who to send to, who is
live, is this peer cut off), so one small object answers them and is shared by reference;
neighbours only ever join (``add``), never leave: a silent one is suspected, not dropped.

A neighbour is suspected when nothing came over its link for ``suspect_after`` *and* the
swarm's aggregates (``vouch``: ``Membership.is_alive``, a member sighted by anyone within
the liveness window) no longer show it alive. A neighbour with a fanout below its degree
sends this peer its heartbeat only every few heartbeats (``swarm.fanout``), so silence
alone would suspect live ones; a crashed one is still given up once its last sighting
leaves the window, between ``suspect_after`` and one heartbeat more after it. A lying
member can only keep a neighbour looking alive: this peer then counts it in its quorum and
waits for its model in an exchange, but never longer than the phase's adaptive deadline and
the fetch tries allow (as for a live neighbour that is slow), so the lie costs a delay
per phase, not a hang.
"""

from __future__ import annotations

from collections.abc import Callable

from swarm.round_counter import Liveness

#: whether the swarm's aggregates show a member alive at a time (see ``Neighbourhood.vouch``)
Vouch = Callable[[str, float], bool]


class Neighbourhood:
    """The sorted neighbour list with a ``Liveness`` record of when each was last heard.

    Parameters
    ----------
    peer_id:
        This peer (never its own neighbour).
    neighbours:
        The initial neighbours.
    suspect_after:
        Seconds of silence after which a neighbour is suspected.
    """

    def __init__(self, peer_id: str, neighbours: list[str], suspect_after: float) -> None:
        self.peer_id = peer_id
        self.peers: list[str] = sorted(neighbours)
        self.liveness = Liveness(suspect_after)
        self._suspected: set[str] = set()  # suspicions already counted
        self._vouch: Vouch | None = None

    def start(self, now: float) -> None:
        """Start the silence clock of every neighbour at ``now``."""
        for peer in self.peers:
            self.liveness.track(peer, now)

    def add(self, peer: str, now: float) -> None:
        """A new link came up: exchange with ``peer`` too (ignores itself and known peers)."""
        if peer != self.peer_id and peer not in self.peers:
            self.peers = sorted([*self.peers, peer])
            self.liveness.track(peer, now)

    def vouch(self, alive: Vouch) -> None:
        """Do not suspect a silent neighbour while ``alive(peer, now)`` says the swarm's
        aggregates show it alive (see the module docstring)."""
        self._vouch = alive

    def is_suspected(self, peer: str, now: float) -> bool:
        """Whether ``peer`` is silent for longer than ``suspect_after`` and not vouched for."""
        if not self.liveness.is_suspected(peer, now):
            return False
        return self._vouch is None or not self._vouch(peer, now)

    def heard(self, peer: str, now: float) -> bool:
        """``peer`` spoke at ``now``; True if it was suspected until then (it is back)."""
        back = self.is_suspected(peer, now)
        self.liveness.heard(peer, now)
        return back

    def spoke(self, peer: str, now: float) -> bool:
        """``peer`` sent a control message: like ``heard``, and a new silence counts again."""
        back = self.heard(peer, now)
        self._suspected.discard(peer)
        return back

    def live(self, now: float) -> list[str]:
        """Neighbours not currently suspected."""
        return [p for p in self.peers if not self.is_suspected(p, now)]

    def suspected(self, now: float) -> list[str]:
        """Neighbours silent for longer than ``suspect_after`` and no longer shown alive."""
        return [p for p in self.peers if self.is_suspected(p, now)]

    def new_suspicions(self, now: float) -> int:
        """How many neighbours became suspected since they last spoke (each counted once)."""
        fresh = [p for p in self.suspected(now) if p not in self._suspected]
        self._suspected.update(fresh)
        return len(fresh)

    def cut_off(self, now: float) -> bool:
        """Every neighbour is suspected (a peer with none at all is not cut off)."""
        return bool(self.peers) and not self.live(now)
