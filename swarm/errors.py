"""Errors raised by the learning side of medswarm (``swarm``)."""

from __future__ import annotations

from gossip.errors import MedswarmError


class SwarmError(MedswarmError):
    """Root of errors raised by ``swarm``."""


class AveragingError(SwarmError):
    """Inputs to an averaging function were unusable; nothing was averaged.

    Attributes
    ----------
    peer:
        The contributing peer at fault, or ``None`` when the fault is global (e.g. empty input).
    tensor:
        The tensor name at fault, or ``None``.
    """

    def __init__(self, message: str, *, peer: str | None = None, tensor: str | None = None) -> None:
        self.peer = peer
        self.tensor = tensor
        where = ", ".join(
            part for part in (f"peer {peer}" if peer else "", f"tensor {tensor}" if tensor else "") if part
        )
        super().__init__(f"{message} ({where})" if where else message)


class TopologyError(SwarmError):
    """A topology could not be built with the requested parameters."""


class DataError(SwarmError):
    """A dataset could not be found, read or partitioned as asked."""


class ConfigError(SwarmError):
    """A simulation or training setting is invalid; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}")
