"""A peer's direct links: who its neighbours are and which of them have gone silent.

Every part of the protocol asks the same questions about the links (who to send to, who is
live, is this peer cut off), so one small object answers them and is shared by reference;
neighbours only ever join (``add``), never leave: a silent one is suspected, not dropped.
"""

from __future__ import annotations

from swarm.round_counter import Liveness


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

    def start(self, now: float) -> None:
        """Start the silence clock of every neighbour at ``now``."""
        for peer in self.peers:
            self.liveness.track(peer, now)

    def add(self, peer: str, now: float) -> None:
        """A new link came up: exchange with ``peer`` too (ignores itself and known peers)."""
        if peer != self.peer_id and peer not in self.peers:
            self.peers = sorted([*self.peers, peer])
            self.liveness.track(peer, now)

    def heard(self, peer: str, now: float) -> bool:
        """``peer`` spoke at ``now``; True if it was suspected until then (it is back)."""
        return self.liveness.heard(peer, now)

    def spoke(self, peer: str, now: float) -> bool:
        """``peer`` sent a control message: like ``heard``, and a new silence counts again."""
        back = self.liveness.heard(peer, now)
        self._suspected.discard(peer)
        return back

    def live(self, now: float) -> list[str]:
        """Neighbours not currently suspected."""
        return [p for p in self.peers if not self.liveness.is_suspected(p, now)]

    def suspected(self, now: float) -> list[str]:
        """Neighbours silent for longer than ``suspect_after``."""
        return [p for p in self.peers if self.liveness.is_suspected(p, now)]

    def new_suspicions(self, now: float) -> int:
        """How many neighbours became suspected since they last spoke (each counted once)."""
        fresh = [p for p in self.suspected(now) if p not in self._suspected]
        self._suspected.update(fresh)
        return len(fresh)

    def cut_off(self, now: float) -> bool:
        """Every neighbour is suspected (a peer with none at all is not cut off)."""
        return bool(self.peers) and not self.live(now)
