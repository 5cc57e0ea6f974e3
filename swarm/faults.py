"""Fault settings for the virtual-clock swarm: link delay, jitter, drops, stragglers, crashes, cuts,
hostile members (``swarm.attacks``)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from swarm.attacks import Attack, parse_attack, validate_attacks
from swarm.errors import ConfigError
from swarm.options import option


@dataclass(frozen=True)
class Crash:
    """Peer ``peer`` dies when it reaches round ``at_round``; back at swarm round ``back_at`` if set."""

    peer: int
    at_round: int
    back_at: int | None = None

    def __str__(self) -> str:
        """The option text (``3@5:10``): what :func:`parse_crash` reads back."""
        return f"{self.peer}@{self.at_round}" + ("" if self.back_at is None else f":{self.back_at}")


@dataclass(frozen=True)
class Cut:
    """Peer ``peer``'s links carry nothing from when it reaches round ``at_round`` until the
    swarm reaches round ``back_at``: the peer keeps running, cut off (a network outage)."""

    peer: int
    at_round: int
    back_at: int

    def __str__(self) -> str:
        """The option text (``1@2:6``): what :func:`parse_cut` reads back."""
        return f"{self.peer}@{self.at_round}:{self.back_at}"


@dataclass(frozen=True)
class LateJoin:
    """Peer ``peer`` starts only when the swarm has reached round ``at_round``."""

    peer: int
    at_round: int

    def __str__(self) -> str:
        """The option text (``2@4``): what :func:`parse_late` reads back."""
        return f"{self.peer}@{self.at_round}"


_CRASH = re.compile(r"^(\d+)@(\d+)(?::(\d+))?$")
_LATE = re.compile(r"^(\d+)@(\d+)$")
_CUT = re.compile(r"^(\d+)@(\d+):(\d+)$")


def parse_crash(text: str) -> Crash:
    """``PEER@ROUND`` or ``PEER@ROUND:BACK_AT_ROUND`` -> Crash (ConfigError otherwise)."""
    m = _CRASH.match(text.strip())
    if not m:
        raise ConfigError("crash", f"expected PEER@ROUND[:BACK_AT_ROUND], got {text!r}")
    back = int(m.group(3)) if m.group(3) else None
    crash = Crash(int(m.group(1)), int(m.group(2)), back)
    if back is not None and back <= crash.at_round:
        raise ConfigError("crash", f"{text!r}: BACK_AT_ROUND must be after ROUND")
    return crash


def parse_late(text: str) -> LateJoin:
    """``PEER@ROUND`` -> LateJoin (ConfigError otherwise)."""
    m = _LATE.match(text.strip())
    if not m:
        raise ConfigError("late", f"expected PEER@ROUND, got {text!r}")
    return LateJoin(int(m.group(1)), int(m.group(2)))


def parse_cut(text: str) -> Cut:
    """``PEER@ROUND:BACK_AT_ROUND`` -> Cut (ConfigError otherwise)."""
    m = _CUT.match(text.strip())
    if not m:
        raise ConfigError("cut", f"expected PEER@ROUND:BACK_AT_ROUND, got {text!r}")
    cut = Cut(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    if cut.back_at <= cut.at_round:
        raise ConfigError("cut", f"{text!r}: BACK_AT_ROUND must be after ROUND")
    return cut


@dataclass(frozen=True)
class FaultConfig:
    """Network and peer faults, all in virtual seconds (options of ``medswarm simulate``).

    ``train_time`` is the virtual duration of one local epoch at normal speed; each
    straggler trains ``slowdown`` times slower. ``drop`` applies independently to every
    control message and every model transfer.
    """

    delay: float = option(0.25, "one-way link delay, s")
    jitter: float = option(0.1, "uniform +- jitter on each delay, s (at most --delay)")
    drop: float = option(0.0, "probability that any message or transfer is lost")
    bandwidth: float = 20e6
    train_time: float = option(5.0, "virtual seconds per local epoch")
    train_jitter: float = 0.1
    stragglers: int = option(0, "number of slow peers")
    slowdown: float = option(5.0, "how much slower stragglers train")
    crashes: tuple[Crash, ...] = option(
        (), "peer PEER dies on reaching ROUND, optionally back when the swarm reaches BACK_AT_ROUND "
            "(repeatable)", flag="--crash", metavar="PEER@ROUND[:BACK_AT_ROUND]", repeat=True, parse=parse_crash)
    late: tuple[LateJoin, ...] = option(
        (), "peer PEER joins only when the swarm reaches ROUND (repeatable)", metavar="PEER@ROUND", repeat=True,
        parse=parse_late)
    cuts: tuple[Cut, ...] = option(
        (), "peer PEER's links carry nothing from its ROUND until the swarm reaches BACK_AT_ROUND; it keeps "
            "running (repeatable)", flag="--cut", metavar="PEER@ROUND:BACK_AT_ROUND", repeat=True, parse=parse_cut)
    attacks: tuple[Attack, ...] = option(
        (), "peer PEER is hostile (swarm arm; repeatable): it serves a poisoned model (KIND signflip, "
            "scale:F, noise:S, zeros, alie[:Z]) or sends forged messages (catchup, forge-stop, "
            "forge-progress[:N], flood[:N])", flag="--attack", metavar="PEER:KIND[:PARAM]", repeat=True,
        parse=parse_attack)

    def __post_init__(self) -> None:
        if self.delay < 0 or self.jitter < 0 or self.jitter > self.delay + 1e-12 and self.delay > 0:
            raise ConfigError("delay", "need delay >= 0 and 0 <= jitter <= delay")
        if not 0 <= self.drop < 1:
            raise ConfigError("drop", f"must be in [0, 1), got {self.drop}")
        if self.bandwidth <= 0 or self.train_time <= 0:
            raise ConfigError("bandwidth", "bandwidth and train_time must be > 0")
        if not 0 <= self.train_jitter < 1:
            raise ConfigError("train_jitter", "must be in [0, 1)")
        if self.stragglers < 0 or self.slowdown < 1:
            raise ConfigError("stragglers", "stragglers >= 0 and slowdown >= 1")
        for crash in self.crashes:
            if crash.at_round < 0 or (crash.back_at is not None and crash.back_at <= crash.at_round):
                raise ConfigError("crash", f"{crash}: need 0 <= ROUND < BACK_AT_ROUND")
        for cut in self.cuts:
            if not 0 <= cut.at_round < cut.back_at:
                raise ConfigError("cut", f"{cut}: need 0 <= ROUND < BACK_AT_ROUND")

    def validate_for(self, peers: int) -> None:
        """Check peer indices against the swarm size (ConfigError naming the option)."""
        if self.stragglers > peers:
            raise ConfigError("stragglers", f"{self.stragglers} stragglers but only {peers} peers")
        for crash in self.crashes:
            if not 0 <= crash.peer < peers:
                raise ConfigError("crash", f"peer {crash.peer} does not exist (peers 0..{peers - 1})")
        for late in self.late:
            if not 0 <= late.peer < peers:
                raise ConfigError("late", f"peer {late.peer} does not exist (peers 0..{peers - 1})")
        for cut in self.cuts:
            if not 0 <= cut.peer < peers:
                raise ConfigError("cut", f"peer {cut.peer} does not exist (peers 0..{peers - 1})")
        if len({c.peer for c in self.cuts}) != len(self.cuts):
            raise ConfigError("cut", "a peer may be cut off only once")
        crashed = [c.peer for c in self.crashes]
        if len(set(crashed)) != len(crashed):
            raise ConfigError("crash", "a peer may crash only once")
        if len(set(crashed)) >= peers:
            raise ConfigError("crash", "at least one peer must stay up")
        validate_attacks(self.attacks, peers)
