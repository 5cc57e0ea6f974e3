"""What the simulation driver and the real peer driver share around a protocol step.

Both turn a finished round into a checkpointable ``PeerState`` and both check a fetched
model the same way (size, digest, decode, validation); keeping that here means the
simulation stays honest about what a real peer does.
"""

from __future__ import annotations

import numpy as np

from gossip.codec import WeightsMessage, digest
from gossip.transport import Payload
from swarm.checkpoint import PeerState
from swarm.choco import Resync
from swarm.node import SwarmNode
from swarm.privacy import PrivateTraining
from swarm.protocol import Fetch, PeerProtocol


def snapshot(node: SwarmNode, protocol: PeerProtocol | None, round_: int) -> PeerState:
    """The state to checkpoint after ``round_``: weights, members, counters, protocol memory,
    and the privacy ledger under DP (so it is written atomically with the weights)."""
    state = PeerState(
        peer_id=node.peer_id, round=round_, step=0,
        weights={k: np.array(v, copy=True) for k, v in node.weights.items()},
        members=tuple(protocol.members()) if protocol else (),
        counters={"accepted": node.stats.accepted, "rejected": sum(node.stats.rejected.values())},
        model_id=node.model_id,
        extra={"deadline": protocol.deadline.history() if protocol else [],
               "seq": protocol.seq if protocol else 0,
               "convergence": protocol.convergence.history() if protocol else {}},
    )
    if isinstance(node.train_fn, PrivateTraining):
        state.extra["dp"] = node.train_fn.ledger.state()
    return state


def restore_privacy(node: SwarmNode, state: PeerState | None, journal: dict | None = None) -> None:
    """Under DP, set the node's ledger to what its checkpoint (and the write-ahead ``journal``)
    say was spent: a restarted peer neither forgets nor recounts a round."""
    if isinstance(node.train_fn, PrivateTraining):
        node.train_fn.restore(state.extra.get("dp") if state is not None else None, journal)


#: a neighbour's model of the same model id may exceed this peer's own by this factor ...
FETCH_MARGIN = 1.25
#: ... plus this many bytes (its header names another sender and other figures)
FETCH_MARGIN_BYTES = 4096


def fetch_limit(own_size: int, float16: bool, q8: bool = False) -> int:
    """The largest model a neighbour can send for the model this peer encodes in ``own_size``
    bytes: the same architecture, so the same size, times ``FETCH_MARGIN`` plus
    ``FETCH_MARGIN_BYTES``; doubled when this peer sends float16, four times when it sends
    8-bit values (a neighbour may not)."""
    return int(own_size * (4 if q8 else 2 if float16 else 1) * FETCH_MARGIN) + FETCH_MARGIN_BYTES


def accept_transfer(node: SwarmNode, fetch: Fetch, payload: Payload,
                    whole: bool = False) -> tuple[WeightsMessage | Resync | None, str]:
    """Check a fetched model against its announcement; ``(message, "")`` or ``(None, reason)``.

    Every refusal is counted in ``node.stats.rejected`` and logged: a payload larger than
    announced as ``oversized``, one with another digest as ``digest-mismatch``, a model
    whose header round is not the announced one as ``wrong-round``; decoding and
    validation failures by ``node.check`` (``codec:...``, ``non-finite``, ...). With CHOCO,
    ``(Resync, "")`` for a difference the replica held cannot take (``whole``: this transfer
    is that resync and must be the whole copy).
    """
    if len(payload) > fetch.size:
        node.reject(fetch.peer, "oversized", f"{len(payload)} bytes, announced {fetch.size}", fetch.round)
        return None, "oversized"
    if digest(payload) != fetch.digest:
        node.reject(fetch.peer, "digest-mismatch", f"announced {fetch.digest}", fetch.round)
        return None, "digest-mismatch"
    msg = node.check(fetch.peer, payload, fetch.round, exact_round=True, whole=whole,
                     catch_up=fetch.catch_up)
    return (msg, "") if msg is not None else (None, "rejected")

