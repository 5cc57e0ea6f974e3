"""CHOCO-gossip: compressors, error feedback, replica bookkeeping and hostile differences."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from gossip.codec import WeightsMessage, decode, digest, encode
from gossip.delta import ChocoHeader, Compressor, apply_difference, compress_difference, parse_compressor
from gossip.errors import CodecError
from swarm.choco import Choco, PublicCopy, Replicas, Resync, choco_mix
from swarm.node import SwarmNode
from swarm.datasets import ArrayDataset
from swarm.robust import Aggregation

Q8, TOPK = Compressor("q8"), Compressor("topk", 0.1)


def _model(rng: np.random.Generator, scale: float = 1.0) -> dict[str, np.ndarray]:
    return {"w": (rng.standard_normal((20, 10)) * scale).astype(np.float32),
            "b": (rng.standard_normal(10) * scale).astype(np.float32),
            "n": np.array(3, dtype=np.int64)}


def _distance(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    return float(np.sqrt(sum(np.sum((a[k].astype(np.float64) - b[k]) ** 2) for k in a if a[k].dtype.kind == "f")))


def test_parse_compressor() -> None:
    assert parse_compressor("q8") == Q8
    assert parse_compressor("topk:0.25") == Compressor("topk", 0.25)
    for bad in ("topk:0", "topk:1.5", "topk:x", "q4"):
        with pytest.raises(ValueError):
            parse_compressor(bad)


@pytest.mark.parametrize("compressor", [Q8, TOPK])
def test_error_feedback_makes_the_copy_converge(compressor: Compressor) -> None:
    """Repeated differences to a fixed x drive the public copy to x (what is not sent is
    sent later); a single top-k step keeps only a tenth of each tensor."""
    rng = np.random.default_rng(0)
    x, public = _model(rng), PublicCopy()
    public.advance(_model(rng), compressor)  # the copy starts elsewhere
    start = _distance(x, public.tensors)
    wire, header = public.advance(x, compressor)
    if compressor.kind == "topk":
        assert wire["w"].size == 20 and wire["w@idx"].size == 20  # 10% of 200 entries
    for _ in range(60):
        public.advance(x, compressor)
    assert _distance(x, public.tensors) < 1e-3 * start
    assert header is not None and header.base != header.result


@pytest.mark.parametrize("compressor", [Q8, TOPK])
def test_receiver_rebuilds_the_same_bits(compressor: Compressor) -> None:
    """The sender's new copy and the receiver's rebuilt replica are bit-identical, over the wire."""
    rng = np.random.default_rng(1)
    public, replicas = PublicCopy(), Replicas(["a"])
    first, _ = public.advance(_model(rng), compressor)
    got = replicas.receive("a", public.whole(), first)
    replicas.keep("a", got, public.digest)
    for _ in range(5):
        wire, header = public.advance(_model(rng), compressor)
        header = replace(header, full="ab" * 16, full_size=1)
        msg = decode(encode(WeightsMessage("m", 0, "a", 1, wire, header)))
        rebuilt = replicas.receive("a", msg.choco, msg.tensors)
        assert isinstance(rebuilt, dict)
        replicas.keep("a", rebuilt, msg.choco.result)
        assert replicas.digest("a") == public.digest
        for k in rebuilt:
            assert rebuilt[k].tobytes() == public.tensors[k].tobytes()


def test_missed_difference_asks_for_a_resync() -> None:
    """A replica that missed a difference cannot apply the next one: Resync, naming the whole copy."""
    rng = np.random.default_rng(2)
    public, replicas = PublicCopy(), Replicas(["a"])
    first, _ = public.advance(_model(rng), Q8)
    replicas.keep("a", replicas.receive("a", public.whole(), first), public.digest)
    public.advance(_model(rng), Q8)  # lost on the way
    wire, header = public.advance(_model(rng), Q8)
    header = ChocoHeader(header.kind, header.base, header.result, "ab" * 16, 1234, header.scales)
    assert replicas.receive("a", header, wire) == Resync("ab" * 16, 1234)
    # the whole copy re-syncs the replica; the next difference applies again
    replicas.keep("a", replicas.receive("a", public.whole(), public.tensors), public.digest)
    wire, header = public.advance(_model(rng), Q8)
    assert isinstance(replicas.receive("a", header, wire), dict)


def test_replicas_bounded_by_neighbours() -> None:
    rng = np.random.default_rng(3)
    replicas, model = Replicas(["a", "b"]), _model(rng)
    for peer in ("a", "b", "c", "d"):
        replicas.keep(peer, model, "x" * 32)
    assert sorted(replicas.copies) == ["a", "b"]
    replicas.retain(["b"])
    assert sorted(replicas.copies) == ["b"]


def test_malformed_difference_refused() -> None:
    rng = np.random.default_rng(4)
    replica = _model(rng)
    wire, scales, _ = compress_difference(_model(rng), replica, TOPK)
    header = ChocoHeader("topk", "a" * 32, "b" * 32, "c" * 32, 10)
    bad = dict(wire, **{"w@idx": wire["w@idx"][::-1].copy()})  # not increasing
    with pytest.raises(CodecError):
        apply_difference(replica, header, bad)
    out_of_range = dict(wire, **{"w@idx": wire["w@idx"] + 1000})
    with pytest.raises(CodecError):
        apply_difference(replica, header, out_of_range)
    with pytest.raises(CodecError):
        apply_difference(replica, header, {k: v for k, v in wire.items() if k != "b"})
    for wire_map in ({"kind": "q9"}, {"kind": "full", "base": "", "result": "x", "full": "", "full_size": 0,
                                       "scales": []}):
        with pytest.raises(CodecError):
            ChocoHeader.from_wire(wire_map)


def _node(peer: str, weights: dict[str, np.ndarray], neighbours: list[str]) -> SwarmNode:
    data = ArrayDataset(np.zeros((4, 2), np.float32), np.zeros(4, np.int64), 2)
    return SwarmNode(peer, lambda *a: None, data, "m", weights, {n: 1 for n in neighbours},
                     choco=Choco(Q8, gamma=1.0))


def _transfer(sender: SwarmNode, receiver: SwarmNode, round_: int) -> object:
    announced, full = sender.offer_payloads(round_)
    got = receiver.check(sender.peer_id, announced, round_, exact_round=True)
    if isinstance(got, Resync):
        assert full is not None and got.digest == digest(full) and got.size == len(full)
        got = receiver.check(sender.peer_id, full, round_, exact_round=True, whole=True)
    return got


def test_nodes_resync_after_a_lost_transfer_and_a_restart() -> None:
    rng = np.random.default_rng(5)
    start = _model(rng)
    a, b = _node("a", start, ["b"]), _node("b", start, ["a"])
    assert isinstance(_transfer(a, b, 0), WeightsMessage)  # first contact: the whole copy
    assert b.stats.resyncs == 0
    a.weights = {k: v + np.float32(0.01) if v.dtype.kind == "f" else v for k, v in a.weights.items()}
    assert isinstance(_transfer(a, b, 1), WeightsMessage) and b.stats.resyncs == 0
    a.offer_payloads(2)  # b misses this one
    msg = _transfer(a, b, 3)
    assert isinstance(msg, WeightsMessage) and b.stats.resyncs == 1
    assert b.replicas.digest("a") == a.public.get("").digest
    a.forget_copies()  # a restarts: its copy travels whole again
    assert isinstance(_transfer(a, b, 4), WeightsMessage) and b.replicas.digest("a") == a.public.get("").digest


def test_hostile_difference_refused_by_validation() -> None:
    """A difference that turns the replica into a sign-flipped model is refused after rebuilding
    (direction check) and the replica dropped, so it never reaches a mix."""
    rng = np.random.default_rng(6)
    start = _model(rng)
    honest, victim = _node("h", start, ["v"]), _node("v", start, ["h"])
    victim.aggregation = Aggregation("clipped", max_norm_ratio=2.0, min_cosine=0.5)
    assert isinstance(_transfer(honest, victim, 0), WeightsMessage)
    honest.weights = {k: -v if v.dtype.kind == "f" else v for k, v in honest.weights.items()}  # turns hostile
    assert _transfer(honest, victim, 1) is None
    assert victim.stats.rejected["direction"] == 1
    assert victim.replicas.digest("h") == ""


def test_choco_mix_with_gamma() -> None:
    x = {"w": np.ones(3, np.float32), "n": np.array(1)}
    x_hat = {"w": np.full(3, 0.5, np.float32), "n": np.array(1)}
    mixed = {"w": np.full(3, 1.5, np.float32), "n": np.array(2)}
    out = choco_mix(x, x_hat, mixed, 0.5)
    np.testing.assert_allclose(out["w"], 1.5)
    assert int(out["n"]) == 2
