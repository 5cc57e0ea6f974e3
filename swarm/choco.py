"""CHOCO-gossip bookkeeping of one peer: its public copy and its neighbours' replicas.

The wire side (differences, digests, compressors) is ``gossip.delta``. Here, without I/O:

- :class:`PublicCopy`: the copy ``x_hat`` of this peer's model its neighbours hold. Each
  offer advances it by the compressed difference ``C(x - x_hat)`` and yields two messages:
  the difference (announced) and the whole copy (fetched only by a neighbour that cannot
  apply the difference). The very first offer, with no copy yet, announces the whole model.
  On a time-varying graph (one partner per exchange) a neighbour would miss the
  differences sent to the others, so there is one copy per partner (:class:`PublicCopies`,
  keyed by the partner; ``""``: the one copy every neighbour of a fixed graph holds).
- :class:`Replicas`: the last copy of each neighbour, with its digest. A difference is
  applied only to the copy it was made from (:meth:`Replicas.receive` says ``Resync`` on
  any other: a missed transfer, a restart on either side) and the result must hash to the
  digest the sender named. One replica per current neighbour, no more (``retain``).
- :func:`choco_mix`: ``x + gamma * (mix(x_hat_i, x_hat_j...) - x_hat_i)``, CHOCO's
  consensus step with the usual (robust) mixing rule over the public copies.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from gossip.delta import ChocoHeader, Compressor, apply_difference, compress_difference, tensors_digest

__all__ = ["Choco", "PublicCopies", "PublicCopy", "Replicas", "Resync", "choco_mix"]


@dataclass(frozen=True)
class Choco:
    """CHOCO settings: the compressor of the differences and the consensus step size."""

    compressor: Compressor
    gamma: float = 1.0


@dataclass(frozen=True)
class Resync:
    """A difference that does not apply to the replica held: fetch the whole copy instead."""

    digest: str
    size: int


def _copy(tensors: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: np.array(v, copy=True) for k, v in tensors.items()}


class PublicCopy:
    """This peer's public copy ``x_hat`` (see the module docstring)."""

    def __init__(self) -> None:
        self.tensors: dict[str, np.ndarray] | None = None
        self.digest = ""

    def advance(self, x: Mapping[str, np.ndarray],
                compressor: Compressor) -> tuple[dict[str, np.ndarray], ChocoHeader | None]:
        """Move the copy towards ``x``: ``(difference tensors, header without full/full_size)``,
        or ``(copy, None)`` the first time (the copy becomes ``x`` and travels whole)."""
        if self.tensors is None:
            self.tensors = _copy(x)
            self.digest = tensors_digest(self.tensors)
            return self.tensors, None
        wire, scales, new = compress_difference(x, self.tensors, compressor)
        base = self.digest
        self.tensors, self.digest = new, tensors_digest(new)
        return wire, ChocoHeader(compressor.kind, base, self.digest, scales=scales)

    def whole(self) -> ChocoHeader:
        """The header of the whole copy as it is now."""
        return ChocoHeader("full", "", self.digest)

    def reset(self) -> None:
        """Forget the copy (a restarted peer): the next offer travels whole."""
        self.tensors, self.digest = None, ""


class PublicCopies:
    """This peer's public copies by audience: ``""`` (every neighbour) or one partner's id."""

    def __init__(self) -> None:
        self.copies: dict[str, PublicCopy] = {}

    def get(self, audience: str) -> PublicCopy:
        """The copy ``audience`` holds (a new, empty one at first)."""
        return self.copies.setdefault(audience, PublicCopy())

    def tensors(self, audience: str) -> dict[str, np.ndarray] | None:
        """The tensors of ``audience``'s copy, None if none was offered to it yet."""
        copy = self.copies.get(audience)
        return None if copy is None else copy.tensors

    def retain(self, neighbours: Iterable[str]) -> None:
        """Keep the shared copy and those of current neighbours only."""
        keep = {"", *neighbours}
        for key in [k for k in self.copies if k not in keep]:
            del self.copies[key]

    def reset(self) -> None:
        """Forget every copy (a restarted peer)."""
        self.copies.clear()


class Replicas:
    """The neighbours' public copies, one per current neighbour (see the module docstring)."""

    def __init__(self, neighbours: Iterable[str]) -> None:
        self.allowed = frozenset(neighbours)
        self.copies: dict[str, tuple[dict[str, np.ndarray], str]] = {}

    def retain(self, neighbours: Iterable[str]) -> None:
        """Keep replicas of ``neighbours`` only (the links may change)."""
        self.allowed = frozenset(neighbours)
        for peer in [p for p in self.copies if p not in self.allowed]:
            del self.copies[peer]

    def digest(self, peer: str) -> str:
        """The digest of ``peer``'s replica ("" if none is held)."""
        entry = self.copies.get(peer)
        return "" if entry is None else entry[1]

    def receive(self, peer: str, header: ChocoHeader,
                tensors: Mapping[str, np.ndarray]) -> dict[str, np.ndarray] | Resync | None:
        """The copy ``peer``'s message makes, not yet kept (``keep`` it once validated).

        ``Resync`` when a difference does not apply to the replica held (or its result does
        not hash to the named digest); None when a whole copy does not hash to its digest.
        Raises ``CodecError`` for a difference that does not fit the replica."""
        if header.kind == "full":
            return dict(tensors) if tensors_digest(tensors) == header.result else None
        held = self.copies.get(peer)
        if held is not None and held[1] == header.result:
            return held[0]  # already applied (a retried transfer of the same difference)
        if held is None or held[1] != header.base:
            return Resync(header.full, header.full_size)
        rebuilt = apply_difference(held[0], header, tensors)
        if tensors_digest(rebuilt) != header.result:
            self.drop(peer)
            return Resync(header.full, header.full_size)
        return rebuilt

    def keep(self, peer: str, tensors: Mapping[str, np.ndarray], digest: str) -> None:
        """Hold ``tensors`` (validated) as ``peer``'s copy, if ``peer`` is a current neighbour."""
        if peer in self.allowed:
            self.copies[peer] = (dict(tensors), digest)  # never changed in place: no copy

    def drop(self, peer: str) -> None:
        """Forget ``peer``'s replica (refused or inconsistent): its next difference resyncs."""
        self.copies.pop(peer, None)

    def __len__(self) -> int:
        return len(self.copies)


def choco_mix(x: Mapping[str, np.ndarray], x_hat: Mapping[str, np.ndarray],
              mixed: Mapping[str, np.ndarray], gamma: float) -> dict[str, np.ndarray]:
    """``x + gamma * (mixed - x_hat)`` for float tensors; other tensors take ``mixed``'s value."""
    out: dict[str, np.ndarray] = {}
    for name, arr in x.items():
        if arr.dtype.kind == "f":
            step = (np.asarray(mixed[name], dtype=np.float32) - x_hat[name]) * np.float32(gamma)
            out[name] = (arr + step).astype(arr.dtype, copy=False)
        else:
            out[name] = np.array(mixed[name], copy=True)
    return out
