"""One swarm peer's model and what it does with its neighbours' models, without I/O.

A ``SwarmNode`` holds a site's weights, trainer and data. It encodes its weights for
neighbours to fetch, decodes and validates what they offer, and mixes the accepted models
with Metropolis-Hastings weights computed from its own neighbourhood only (or adopts a
model far ahead, to catch up). Moving the bytes and timing the steps is the driver's
business: ``peers.runner`` over a real transport, ``swarm.virtual_swarm`` on a virtual
clock. Rejected messages are counted and logged, never mixed.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, deque
from dataclasses import dataclass, field, replace
from typing import Mapping, Protocol

import numpy as np

from gossip.codec import CodecError, WeightsMessage, decode, digest, encode
from gossip.delta import ChocoHeader
from gossip.errors import RejectedMessage
from gossip.transport import Payload
from gossip.validate import validate_weights
from swarm.choco import Choco, PublicCopies, Replicas, Resync, choco_mix
from swarm.averaging import Contribution, coordinate_median, mixing_row, weighted_average
from swarm.mixing import sample_weighted_row
from swarm.robust import CLIP_HISTORY, Aggregation, robust_mix_measured
from swarm.datasets import ArrayDataset
from swarm.errors import AveragingError
from swarm.flat_weights import FlatWeights

log = logging.getLogger("medswarm.node")


class TrainResultLike(Protocol):
    """What a trainer returns: new weights, the mean loss and the samples per epoch."""

    weights: dict[str, np.ndarray]
    loss: float
    samples: int


class TrainFn(Protocol):
    """``train(weights, data, seed) -> TrainResult``: swap in a fake one in tests."""

    def __call__(self, weights: Mapping[str, np.ndarray], data: ArrayDataset, seed: int) -> TrainResultLike:
        ...


@dataclass
class NodeStats:
    """Counters and timers a node keeps for reports and the status endpoint."""

    accepted: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    stale: int = 0
    #: CHOCO differences that did not apply to the replica held (a whole copy was fetched)
    resyncs: int = 0
    train_s: float = 0.0
    codec_s: float = 0.0
    averaging_s: float = 0.0


class SwarmNode:
    """A peer's model: encode it, check a neighbour's, mix or adopt; the driver trains.

    Parameters
    ----------
    peer_id:
        This peer's id (put into every encoded model, checked as the sender of others).
    train_fn:
        Local training callable (``swarm.training.Trainer.train`` in practice); the driver
        calls it (in a worker thread for a real peer) and stores the result.
    data:
        This site's local training set.
    model_id:
        Architecture id put into and checked on every message.
    weights:
        Starting weights (every peer of a swarm starts from the same seeded ones).
    neighbour_degrees:
        ``{neighbour: degree}``: what Metropolis-Hastings weights need from the neighbourhood.
    float16:
        Send float32 weights as float16 on the wire (half the bytes).
    q8:
        Send float32 weights as 8-bit values with one scale per tensor (a quarter of the bytes;
        ``gossip.codec.quantize_q8``). Received models are validated after dequantisation.
    sample_weighted:
        Mix with sample-aware Metropolis-Hastings weights (``swarm.mixing``), so the swarm
        converges to FedAvg's sample-weighted mean; plain Metropolis weights otherwise
        (the uniform mean).
    aggregation:
        How the weighted models are combined (``swarm.robust``): ``mean`` (plain gossip) or
        a rule that bounds one neighbour's influence (``clipped``, ``trimmed``, ``median``).
        Its ``max_norm_ratio`` and ``min_cosine`` also refuse a received model whose norm
        or direction is far from this node's own (``gossip.validate``).
    max_abs:
        A received model is refused if any value exceeds it in magnitude.
    flat:
        Keep the weights in one contiguous float32 buffer (``swarm.flat_weights``): each
        model assigned is copied into a new one (the simulation's choice: one allocation
        per peer's model, one contiguous vector to hash or ship to Ray).
    choco:
        Exchange compressed differences to public copies instead of whole models
        (``swarm.choco``, CHOCO-gossip); None: whole models.
    """

    def __init__(
        self,
        peer_id: str,
        train_fn: TrainFn,
        data: ArrayDataset,
        model_id: str,
        weights: Mapping[str, np.ndarray],
        neighbour_degrees: Mapping[str, int],
        *,
        float16: bool = False,
        q8: bool = False,
        sample_weighted: bool = True,
        aggregation: Aggregation = Aggregation(),
        max_abs: float = 1e4,
        flat: bool = False,
        choco: Choco | None = None,
    ) -> None:
        self.peer_id = peer_id
        self.train_fn = train_fn
        self.data = data
        self.model_id = model_id
        self._weights: dict[str, np.ndarray] = {}
        self._use_flat = flat
        self.weights = {k: np.array(v, copy=True) for k, v in weights.items()} if not flat else weights
        self.neighbour_degrees = dict(neighbour_degrees)
        self.float16 = float16
        self.q8 = q8
        self.sample_weighted = sample_weighted
        self.aggregation = aggregation
        self.max_abs = max_abs
        self.stats = NodeStats()
        self.last_loss = float("nan")
        self.choco = choco
        self.public = PublicCopies()
        self.replicas = Replicas(self.neighbour_degrees)
        #: distances of the last accepted neighbours' models (``clipped`` only): the clipping
        #: radius with one neighbour heard (``swarm.robust.clip_radius``). Bounded; fed only
        #: by models that passed validation; not checkpointed (a restarted peer catches up to
        #: another model, so its old distances no longer describe it; it refills in a few
        #: rounds, validation meanwhile unchanged)
        self.distance_history: deque[float] = deque(maxlen=CLIP_HISTORY)

    @property
    def weights(self) -> dict[str, np.ndarray]:
        """The current model (with ``flat``: views into this node's one buffer)."""
        return self._weights

    @weights.setter
    def weights(self, new: Mapping[str, np.ndarray]) -> None:
        if self._use_flat:  # a copy into a new buffer: views handed out earlier keep their values
            self._weights = FlatWeights(new).views
        else:
            self._weights = new if isinstance(new, dict) else dict(new)

    def encode_model(self, round_: int) -> memoryview:
        """The current weights as a wire message of round ``round_`` (what neighbours fetch)."""
        return self.encode_weights(round_, self.outgoing())

    def outgoing(self) -> Mapping[str, np.ndarray]:
        """The weights this node serves: its own (a hostile one in ``swarm.poison`` lies here)."""
        return self.weights

    def encode_weights(self, round_: int, weights: Mapping[str, np.ndarray]) -> memoryview:
        """``weights`` as this node's wire message of round ``round_``."""
        start = time.perf_counter()
        payload = encode(
            WeightsMessage(self.model_id, round_, self.peer_id, len(self.data), dict(weights)),
            float16=self.float16, q8=self.q8,
        )
        self.stats.codec_s += time.perf_counter() - start
        return payload

    def forget_copies(self) -> None:
        """Lose the CHOCO public copy and replicas (a restart): every copy travels whole again."""
        self.public.reset()
        self.replicas.copies.clear()

    def offer_payloads(self, round_: int, audience: str = "") -> tuple[memoryview, memoryview | None]:
        """What this node serves for an exchange of round ``round_``: the announced message
        and, with CHOCO, the whole public copy for neighbours that must resync (None if the
        announced message is that copy already). ``audience``: whose copy advances (``""``
        every neighbour's; a partner's id on a time-varying graph)."""
        if self.choco is None:
            return self.encode_model(round_), None
        start = time.perf_counter()
        public = self.public.get(audience)
        tensors, header = public.advance(self.outgoing(), self.choco.compressor)
        full = self._encode_choco(round_, public.tensors or {}, public.whole())
        if header is None:
            self.stats.codec_s += time.perf_counter() - start
            return full, None
        header = replace(header, full=digest(full), full_size=len(full))
        announced = self._encode_choco(round_, tensors, header)
        self.stats.codec_s += time.perf_counter() - start
        return announced, full

    def _encode_choco(self, round_: int, tensors: Mapping[str, np.ndarray], header: ChocoHeader) -> memoryview:
        return encode(WeightsMessage(self.model_id, round_, self.peer_id, len(self.data), dict(tensors), header))

    def check(self, sender: str, payload: Payload, round_: int, *, exact_round: bool = False,
              whole: bool = False, catch_up: bool = False) -> WeightsMessage | Resync | None:
        """Decode and validate a model from ``sender``; None (counted, logged) if refused.

        A ``catch_up`` model (fetched to jump ahead) is some rounds ahead of this peer's, and
        a model's norm grows as the swarm trains (heart, four sites: x2.1 from round 7 to
        round 37), so its norm is held within the square of ``max_norm_ratio`` instead:
        still a bound, and one a peer back from a long outage can meet.

        A model of another round than ``round_`` is refused: counted as stale when it was
        pushed (it may just be late), or rejected as ``wrong-round`` with ``exact_round``,
        for a model fetched under an announcement of ``round_`` (the sender's own header
        contradicts what it announced).

        With CHOCO, the message is a difference to ``sender``'s public copy (or the copy
        itself; ``whole`` demands the copy, for a resync): the rebuilt copy is what is
        validated, kept as the replica and returned; ``Resync`` if the difference does not
        apply to the replica held. A refused copy drops the replica.
        """
        start = time.perf_counter()
        try:
            msg = decode(payload)
            if self.choco is not None:
                rebuilt = self._rebuild(sender, msg, whole)
                if isinstance(rebuilt, Resync):
                    return rebuilt
                msg = rebuilt
            validate_weights(msg, link_peer=sender, model_id=self.model_id,
                             reference=self.weights, max_abs=self.max_abs,
                             max_norm_ratio=_norm_bound(self.aggregation.max_norm_ratio, catch_up),
                             min_cosine=self.aggregation.min_cosine)
        except CodecError as err:
            self.replicas.drop(sender)
            self.reject(sender, f"codec:{err.reason}", str(err), round_)
            return None
        except RejectedMessage as err:
            self.replicas.drop(sender)
            self.reject(sender, err.reason, str(err), round_)
            return None
        finally:
            self.stats.codec_s += time.perf_counter() - start
        if self.choco is not None and msg.choco is not None:
            self.replicas.keep(sender, msg.tensors, msg.choco.result)
            msg = replace(msg, choco=None)
        if msg.round != round_:
            if exact_round:
                self.reject(sender, "wrong-round", f"header round {msg.round}, announced {round_}", round_)
            else:
                self.stats.stale += 1
            return None
        self.stats.accepted += 1
        return msg

    def _rebuild(self, sender: str, msg: WeightsMessage, whole: bool) -> WeightsMessage | Resync:
        """The public copy ``msg`` makes of ``sender``'s (header kept for ``keep``); raises
        ``CodecError`` for a message that is no CHOCO one, or no whole copy when ``whole``."""
        header = msg.choco
        if header is None or (whole and header.kind != "full"):
            raise CodecError("bad-header", "expected a CHOCO " + ("whole copy" if whole else "message"))
        if msg.sender != sender:
            raise RejectedMessage(sender, "sender-mismatch", f"message claims sender {msg.sender!r}")
        rebuilt = self.replicas.receive(sender, header, msg.tensors)
        if rebuilt is None:
            raise CodecError("bad-header", "whole copy does not match its digest")
        if isinstance(rebuilt, Resync):
            self.stats.resyncs += 1
            return rebuilt
        return replace(msg, tensors=rebuilt)

    def mix(self, received: Mapping[str, WeightsMessage],
            degrees: Mapping[str, int] | None = None, measure: bool = True,
            self_degree: int | None = None, audience: str = "") -> float | None:
        """Replace the weights by their Metropolis-Hastings mix with the received models.

        The mix follows ``self.aggregation`` (``swarm.robust.robust_mix``; ``clipped`` with this
        node's ``distance_history``). Only neighbours whose model arrived get a weight; the share of a missing one stays
        with this node, so the mix is always a convex combination. ``degrees`` overrides
        the neighbours' degrees (a real peer learns them from announcements), ``self_degree``
        this node's (a time-varying graph's degree in this phase; None: its neighbour count);
        with CHOCO, ``audience`` names the public copy the phase's neighbours hold. Returns the
        local consensus-distance estimate: the distance from the weights before mixing to
        the plain average of the received models, relative to the weights' norm (None if
        nothing arrived, or if ``measure`` is false: it costs a pass over every tensor).
        """
        start = time.perf_counter()
        known = dict(self.neighbour_degrees if degrees is None else degrees)
        heard = {p: d for p, d in known.items() if p in received}
        degree = len(self.neighbour_degrees) if self_degree is None else self_degree
        if self.sample_weighted:
            self_w, neigh_w = sample_weighted_row(
                degree, len(self.data), heard, {p: received[p].sample_count for p in heard}
            )
        else:
            self_w, neigh_w = mixing_row(degree, heard)
        distance = _relative_distance(self.weights, [received[p].tensors for p in heard]) if measure else None
        public = self.public.tensors(audience) if self.choco is not None else None
        own = Contribution(self.peer_id, self.weights if public is None else public, self_w)
        neighbours = [Contribution(p, received[p].tensors, w) for p, w in neigh_w.items()]
        try:
            mixed = robust_mix_measured(self.aggregation, own, neighbours, self.distance_history)
            # CHOCO's consensus step: x + gamma * (mix of the public copies - own public copy)
            self.weights = mixed.weights if public is None or self.choco is None else \
                choco_mix(self.weights, public, mixed.weights, self.choco.gamma)
            self.distance_history.extend(mixed.distances)
        except AveragingError as err:
            # validation makes this unreachable in practice; keep the local model if not
            self.reject(err.peer or "?", "averaging", str(err), -1)
        self.stats.averaging_s += time.perf_counter() - start
        return distance

    def adopt(self, msg: WeightsMessage, keep_own: float) -> None:
        """Catch up on a neighbour far ahead: take its model, keeping ``keep_own`` of ours."""
        start = time.perf_counter()
        if keep_own > 0:
            self.weights = weighted_average([
                Contribution(self.peer_id, self.weights, keep_own),
                Contribution(msg.sender, msg.tensors, 1.0 - keep_own),
            ])
        else:
            self.weights = {k: np.array(v, copy=True) for k, v in msg.tensors.items()}
        self.stats.averaging_s += time.perf_counter() - start

    def adopt_median(self, msgs: list[WeightsMessage]) -> None:
        """Catch up on several members' final models: the coordinate-wise median of ours and
        theirs, which no single one of them can pull beyond the others' values."""
        start = time.perf_counter()
        models = [Contribution(self.peer_id, self.weights, 1.0),
                  *(Contribution(m.sender, m.tensors, 1.0) for m in msgs)]
        self.weights = coordinate_median(models)  # new arrays
        self.stats.averaging_s += time.perf_counter() - start

    def reject(self, sender: str, reason: str, detail: str, round_: int) -> None:
        """Count a refused message or transfer by ``reason`` and log it; the model is untouched."""
        self.stats.rejected[reason] += 1
        log.warning(
            "event=rejected peer=%s round=%d from=%s reason=%s detail=%s",
            self.peer_id, round_, sender, reason, detail,
        )


def _norm_bound(ratio: float | None, catch_up: bool) -> float | None:
    """The norm-ratio bound a received model is held to (squared for a catch-up model)."""
    return ratio * ratio if ratio is not None and catch_up else ratio


def _relative_distance(own: Mapping[str, np.ndarray], others: list[Mapping[str, np.ndarray]]) -> float | None:
    """||own - mean(others)|| / ||own||, over all floating-point tensors."""
    if not others:
        return None
    diff = norm = 0.0
    for name, arr in own.items():
        if arr.dtype.kind != "f":
            continue
        mean = np.mean([np.asarray(o[name], dtype=np.float64) for o in others], axis=0)
        diff += float(np.sum((arr.astype(np.float64) - mean) ** 2))
        norm += float(np.sum(arr.astype(np.float64) ** 2))
    return float(np.sqrt(diff / norm)) if norm > 0 else 0.0
