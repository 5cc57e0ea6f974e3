"""Forged control messages: what a hostile member sends besides its (maybe poisoned) model.

:class:`HostileExecutor` is the attacker's ``PeerExecutor``: it performs its own protocol's
actions like any peer's, and each time that protocol starts a round's training it also
sends, to every neighbour, the forged messages of the peer's message attacks
(``swarm.attacks.MESSAGE_KINDS``; the kinds are described there). Every message is a valid
control message on the wire (``encode_control`` accepts it); the lies are in what it
claims: a round far ahead, a vote never cast, an origin that did not sign it, a phase
never reached, a size never meant. Records of the attacker's own origin carry its real
signature (a member's key signs whatever the member wants); records of other origins are
signed with the attacker's key, which is a bad signature for them.

Sequence numbers: the attacker's own records take fresh numbers from its own protocol, so
they are never duplicates; records forged for other origins take numbers from ``2**62`` up,
growing with the round (above any a real peer uses), and one stop decision per round takes
the largest number there is.

In the simulation, serving a catch-up lure four rounds ahead makes the seam forget the
attacker's models of its earlier rounds (``SimSeam.serve`` keeps the last two rounds
below the newest), so a neighbour a round behind fails to fetch its honest model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from gossip.codec import digest
from gossip.control import Announce, ControlMessage, Progress, Skip, StopDecision
from gossip.signing import RecordSigner
from swarm.attacks import Attack
from swarm.executor import PeerExecutor, Seam
from swarm.metrics import finite_or_none
from swarm.poison import HostileNode, sign_flipped
from swarm.protocol import Action, PeerProtocol, SendControl, Train

#: how many rounds ahead of its own the attacker claims to be (catchup, forge-progress)
AHEAD = 4
#: the streak of converged votes forged records claim
STREAK = 100
#: the largest sequence number on the wire (``gossip.control``: counts are below 2**63)
MAX_SEQ = 2**63 - 1
#: where sequence numbers forged for other origins start
FORGED_SEQ = 2**62
#: an announced size no receiver accepts (the flood's huge announcements)
HUGE = 2**40
#: duplicates of its own progress record the flood sends each neighbour per round
DUPLICATES = 100
#: length of the invented origins of forge-progress (the wire allows 256)
INVENTED_ID_CHARS = 240


class HostileExecutor(PeerExecutor):
    """An attacker's executor: its protocol's actions, plus forged messages every round.

    Parameters
    ----------
    node:
        The attacker's node (its ``attacks``, its seeded ``rng`` and its ``sent`` counter).
    protocol, seam, **kwargs:
        As ``PeerExecutor``.
    signer:
        The attacker's own record signer (``gossip.signing.sim_keyring``).
    members:
        Every member's id (the origins it forges records for).
    """

    node: HostileNode

    def __init__(self, node: HostileNode, protocol: PeerProtocol, seam: Seam, *, signer: RecordSigner,
                 members: Sequence[str], **kwargs: Any) -> None:
        super().__init__(node, protocol, seam, **kwargs)
        self.signer = signer
        self.others = [m for m in members if m != node.peer_id]

    def _do(self, action: Action) -> None:
        if isinstance(action, Train):
            self.attack(action.round)
        super()._do(action)

    def attack(self, round_: int) -> None:
        """Send round ``round_``'s forged messages of every message attack of this peer."""
        for attack in self.node.attacks:
            forge = _FORGERS.get(attack.kind)
            if forge is not None:
                for msg in forge(self, attack, round_):
                    for peer in self.protocol.neighbours:
                        self._emit(attack.kind, peer, msg)

    # ------------------------------------------------------------ helpers
    @property
    def _me(self) -> str:
        return self.node.peer_id

    def _emit(self, kind: str, peer: str, msg: ControlMessage) -> None:
        self.node.sent[kind] += 1
        self._do(SendControl(peer, msg))  # encoded, counted and sent as any peer's message

    def _ahead(self, round_: int) -> int:
        """The far-ahead round it claims: ``AHEAD`` past its own, within ``max_rounds``."""
        return min(round_ + AHEAD, self.protocol.config.convergence.max_rounds - 1)

    def _own_progress(self, round_: int, converged: bool) -> Progress:
        """A validly signed progress record of its own origin, claiming ``round_``."""
        cfg = self.protocol.config
        return self.signer.sign(Progress(
            self._me, self.protocol.membership.next_seq(), round_, finite_or_none(self.node.last_loss),
            None, 0.0, converged, STREAK if converged else 0, cfg.progress_ttl))

    # ------------------------------------------------------------ the kinds
    def _catchup(self, attack: Attack, round_: int) -> list[ControlMessage]:
        """A stopped peer's "final model" far ahead, sign-flipped (zeros would fail the
        receivers' norm check), plus its own converged progress record at that round."""
        target = self._ahead(round_)
        if target <= round_:
            return []
        step = self.protocol.config.gossip_steps
        payload = self.node.encode_weights(target, sign_flipped(self.node.weights))
        key = digest(payload)
        self.seam.serve(target, step, key, payload)
        lure = Announce(self._me, target, step, key, len(payload), len(self.node.data),
                        len(self.protocol.neighbours))
        return [lure, self._own_progress(target, converged=True)]

    def _forge_stop(self, attack: Attack, round_: int) -> list[ControlMessage]:
        """Stop decisions under every other member's name (one with the largest seq), and its
        own, validly signed, to stop now."""
        cfg = self.protocol.config
        stop = min(max(1, round_), cfg.convergence.max_rounds - 1)
        msgs: list[ControlMessage] = []
        for i, origin in enumerate(self.others):
            seq = MAX_SEQ if i == 0 else FORGED_SEQ + (round_ << 20) + i
            msgs.append(self.signer.sign(StopDecision(origin, seq, stop, f"converged: {origin} says so",
                                                      cfg.progress_ttl)))
        own = StopDecision(self._me, self.protocol.membership.next_seq(), stop,
                           f"converged: {len(self.others) + 1} live members voted converged", cfg.progress_ttl)
        return msgs + [self.signer.sign(own)]

    def _forge_progress(self, attack: Attack, round_: int) -> list[ControlMessage]:
        """Converged records far ahead under other members' names, under invented long ids,
        and under its own (validly signed)."""
        cfg = self.protocol.config
        far = self._ahead(round_)
        msgs: list[ControlMessage] = []
        for i, origin in enumerate(self.others):
            msgs.append(self.signer.sign(Progress(origin, FORGED_SEQ + (round_ << 20) + i, far, 0.1, 0.1, 0.0,
                                                  True, STREAK, cfg.progress_ttl)))
        for i in range(int(attack.value)):
            origin = f"intruder-{round_}-{i}-".ljust(INVENTED_ID_CHARS, "x")
            msgs.append(self.signer.sign(Progress(origin, 1 + round_, far, 0.1, 0.1, 0.0, True, STREAK,
                                                  cfg.progress_ttl)))
        return msgs + [self._own_progress(far, converged=True)]

    def _flood(self, attack: Attack, round_: int) -> list[ControlMessage]:
        """Announcements (huge or plausible sizes, random digests) and skips of random phases
        ahead, some past ``max_rounds``, then duplicates of one own progress record."""
        cfg, rng = self.protocol.config, self.node.rng
        plausible = max(1, (self.protocol.max_model_bytes or 2 * HUGE) // 2)
        last = cfg.convergence.max_rounds + 8
        msgs: list[ControlMessage] = []
        for i in range(int(attack.value)):
            phase_round = int(rng.integers(round_ + 1, max(round_ + 2, last)))
            if i % 2 == 0:
                size = HUGE if rng.random() < 0.5 else plausible
                msgs.append(Announce(self._me, phase_round, int(rng.integers(0, cfg.gossip_steps + 1)),
                                     rng.bytes(16).hex(), size, len(self.node.data), len(self.protocol.neighbours)))
            else:
                msgs.append(Skip(self._me, phase_round, int(rng.integers(0, cfg.gossip_steps))))
        return msgs + [self._own_progress(round_, converged=False)] * DUPLICATES


_FORGERS: dict[str, Callable[[HostileExecutor, Attack, int], list[ControlMessage]]] = {
    "catchup": HostileExecutor._catchup,
    "forge-stop": HostileExecutor._forge_stop,
    "forge-progress": HostileExecutor._forge_progress,
    "flood": HostileExecutor._flood,
}
