"""Hostile members of a simulated swarm: who attacks and how (``medswarm simulate --attack``).

An attacker is a consortium member that runs the real protocol (it trains, announces every
phase and mixes like the others) but lies in one or more ways. Two families:

model poisoning (what the attacker *serves* to its neighbours; its own model stays honest)
    ``signflip``      serves ``-x``
    ``scale:F``       serves ``F * x``
    ``noise:S``       serves ``x`` plus Gaussian noise of standard deviation ``S`` (seeded)
    ``zeros``         serves all-zero floating tensors
    ``alie[:Z]``      "A little is enough" (Baruch, Baruch and Goldberg, NeurIPS 2019): the
                      coordinate-wise mean minus ``Z`` standard deviations of the models it
                      last received from its neighbours plus its own. ``Z`` defaults to 1.0
                      (the paper's formula ``z = Phi^-1((n - s) / n)``, ``s = floor(n/2 + 1) - f``,
                      gives only 0.25 for one attacker among five models; pass ``alie:Z``)

forged control messages (sent to every neighbour once per round, when the attacker trains)
    ``catchup``         lures neighbours into catching up: announces a far-ahead stopped
                        peer's final model (round ``min(own + 4, max_rounds - 1)``, step
                        ``gossip_steps``) that is its own model sign-flipped, and floods its
                        own validly signed progress records claiming that round, converged
    ``forge-stop``      stop decisions naming every other member as origin (signed with
                        the attacker's key, so a bad signature for them; one with seq
                        ``2**63 - 1``), plus its own validly signed decision to stop now
    ``forge-progress[:N]``  progress records with other members' origins (bad signatures),
                        ``N`` (default 200) invented non-member origins of long ids, and
                        its own validly signed records claiming a far-ahead round, converged
    ``flood[:N]``       ``N`` (default 500) announcements and skips per neighbour for
                        phases ahead, with huge or plausible sizes and random digests,
                        plus a burst of duplicates of its own progress record

A peer takes at most one model-poisoning kind and any of the message kinds. Nothing heavy
is imported here (the command line builds from it); the behaviour lives in
``swarm.poison`` (what is served) and ``swarm.forgery`` (what is sent).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from swarm.errors import ConfigError

#: kinds that change the model the attacker serves (at most one per peer)
MODEL_KINDS = ("signflip", "scale", "noise", "zeros", "alie")
#: kinds that send forged control messages
MESSAGE_KINDS = ("catchup", "forge-stop", "forge-progress", "flood")
KINDS = MODEL_KINDS + MESSAGE_KINDS

#: kinds that need a parameter, and kinds whose parameter is optional (with its default)
_REQUIRED = ("scale", "noise")
DEFAULTS: dict[str, float] = {"alie": 1.0, "forge-progress": 200.0, "flood": 500.0}
#: kinds whose parameter is a count of messages (an integer in [1, MAX_COUNT])
_COUNTS = ("forge-progress", "flood")
MAX_COUNT = 10_000

_ATTACK = re.compile(r"^(\d+):([a-z-]+)(?::([^:]+))?$")


@dataclass(frozen=True)
class Attack:
    """Peer ``peer`` attacks with ``kind`` (one of :data:`KINDS`); ``param`` as the kind says."""

    peer: int
    kind: str
    param: float | None = None

    def __post_init__(self) -> None:
        _check(self)

    @property
    def value(self) -> float:
        """The parameter, or the default of a kind whose parameter is optional (:data:`DEFAULTS`)."""
        return self.param if self.param is not None else DEFAULTS[self.kind]

    @property
    def label(self) -> str:
        """The kind with its parameter as given (``scale:5``), for reports."""
        if self.param is None:
            return self.kind
        text = f"{self.param:g}"
        return f"{self.kind}:{text if float(text) == self.param else repr(self.param)}"

    def __str__(self) -> str:
        """The option text (``3:scale:5``): what :func:`parse_attack` reads back."""
        return f"{self.peer}:{self.label}"


def _check(attack: Attack) -> None:
    kind, param = attack.kind, attack.param
    if attack.peer < 0:
        raise ConfigError("attack", f"peer must be >= 0, got {attack.peer}")
    if kind not in KINDS:
        raise ConfigError("attack", f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
    if param is None:
        if kind in _REQUIRED:
            raise ConfigError("attack", f"{kind} needs a parameter, e.g. {attack.peer}:{kind}:5")
        return
    if kind not in _REQUIRED and kind not in DEFAULTS:
        raise ConfigError("attack", f"{kind} takes no parameter, got {param:g}")
    if not math.isfinite(param):
        raise ConfigError("attack", f"{kind}: the parameter must be finite, got {param}")
    if kind == "noise" and param <= 0:
        raise ConfigError("attack", f"noise: the standard deviation must be > 0, got {param:g}")
    if kind == "alie" and param < 0:
        raise ConfigError("attack", f"alie: z must be >= 0, got {param:g}")
    if kind in _COUNTS and (param != int(param) or not 1 <= param <= MAX_COUNT):
        raise ConfigError("attack", f"{kind}: the count must be an integer in [1, {MAX_COUNT}], got {param:g}")


def parse_attack(text: str) -> Attack:
    """``PEER:KIND`` or ``PEER:KIND:PARAM`` (``3:scale:5``) -> Attack (ConfigError naming
    ``attack`` otherwise)."""
    m = _ATTACK.match(text.strip())
    if not m:
        raise ConfigError("attack", f"expected PEER:KIND[:PARAM] (kinds: {', '.join(KINDS)}), got {text!r}")
    param = None
    if m.group(3) is not None:
        try:
            param = float(m.group(3))
        except ValueError:
            raise ConfigError("attack", f"{text!r}: the parameter must be a number") from None
    return Attack(int(m.group(1)), m.group(2), param)


def by_peer(attacks: tuple[Attack, ...]) -> dict[int, tuple[Attack, ...]]:
    """``{peer: its attacks}`` in the order given."""
    out: dict[int, tuple[Attack, ...]] = {}
    for attack in attacks:
        out[attack.peer] = out.get(attack.peer, ()) + (attack,)
    return out


def validate_attacks(attacks: tuple[Attack, ...], peers: int) -> None:
    """Check ``attacks`` against a swarm of ``peers`` (ConfigError naming ``attack``): every
    attacker exists, at least one peer stays honest, and a peer has each kind at most once
    and at most one model-poisoning kind."""
    for peer, mine in by_peer(attacks).items():
        if peer >= peers:
            raise ConfigError("attack", f"peer {peer} does not exist (peers 0..{peers - 1})")
        kinds = [a.kind for a in mine]
        if len(set(kinds)) != len(kinds):
            raise ConfigError("attack", f"peer {peer} has the same kind twice: {', '.join(kinds)}")
        if len([k for k in kinds if k in MODEL_KINDS]) > 1:
            raise ConfigError("attack", f"peer {peer} may serve only one poisoned model, got {', '.join(kinds)}")
    if attacks and len(by_peer(attacks)) >= peers:
        raise ConfigError("attack", "at least one peer must stay honest")
