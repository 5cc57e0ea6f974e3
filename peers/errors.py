"""Errors of the peer process (``peers``): bad options, unreachable bootstrap, refusal to start."""

from __future__ import annotations

from gossip.errors import MedswarmError


class PeerError(MedswarmError):
    """The peer cannot start or go on; the message is one line for the user."""
