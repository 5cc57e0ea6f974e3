"""The per-peer logic with a fake trainer: encoding, validation, rejection, mixing, adoption."""

from dataclasses import dataclass

import numpy as np
import pytest

from gossip.codec import WeightsMessage, decode, encode
from swarm.node import SwarmNode

MODEL = "fake-model"


@dataclass
class FakeResult:
    weights: dict
    loss: float
    samples: int


def add_one(weights, data, seed):
    """A trainer that adds 1 to every float tensor (the driver calls it; nodes only hold it)."""
    return FakeResult({k: v + 1 for k, v in weights.items()}, 0.5, len(data))


def start_weights(value):
    return {"w": np.full((2, 3), value, dtype=np.float32), "b": np.full(3, value, dtype=np.float32)}


def make_ring(n, values):
    ids = [f"p{i}" for i in range(n)]
    links = {ids[i]: sorted({ids[(i - 1) % n], ids[(i + 1) % n]}) for i in range(n)}
    return [
        SwarmNode(ids[i], add_one, list(range(10)), MODEL, start_weights(values[i]),
                  {nb: len(links[nb]) for nb in links[ids[i]]})
        for i in range(n)
    ], links


def gossip(nodes, links, round_):
    """One exchange: every node encodes, then checks and mixes what its neighbours encoded."""
    payloads = {node.peer_id: node.encode_model(round_) for node in nodes}
    for node in nodes:
        received = {}
        for sender in links[node.peer_id]:
            msg = node.check(sender, payloads[sender], round_)
            if msg is not None:
                received[sender] = msg
        node.mix(received)


def test_ring_gossip_preserves_the_mean_and_contracts():
    values = [10.0, 14.0, 18.0, 22.0]  # within the 10x norm check of each other
    nodes, links = make_ring(4, values)
    spread_before = np.ptp(values)
    for _ in range(5):
        gossip(nodes, links, 0)
    finals = [float(n.weights["w"][0, 0]) for n in nodes]
    assert np.mean(finals) == pytest.approx(np.mean(values), abs=1e-5)
    assert np.ptp(finals) < spread_before / 4
    assert all(n.stats.accepted == 5 * 2 for n in nodes)


def test_encoded_model_carries_the_round_the_sender_and_the_weights():
    nodes, _ = make_ring(3, [2.0, 0.0, 0.0])
    msg = decode(nodes[0].encode_model(7))
    assert (msg.round, msg.sender, msg.model_id, msg.sample_count) == (7, "p0", MODEL, 10)
    np.testing.assert_array_equal(msg.tensors["w"], nodes[0].weights["w"])


def test_missing_neighbour_share_stays_with_self():
    nodes, _ = make_ring(3, [0.0, 3.0, 6.0])
    msg = nodes[0].check("p1", nodes[1].encode_model(0), 0)  # only p1 speaks
    nodes[0].mix({"p1": msg})
    # p0 (degree 2) mixes p1 with weight 1/3 and keeps the rest: 2/3*0 + 1/3*3
    assert nodes[0].weights["w"][0, 0] == pytest.approx(1.0)


def test_adopt_takes_the_neighbours_model_keeping_the_given_share_of_its_own():
    nodes, _ = make_ring(3, [0.0, 4.0, 8.0])
    msg = nodes[0].check("p1", nodes[1].encode_model(0), 0)
    nodes[0].adopt(msg, keep_own=0.25)
    assert nodes[0].weights["w"][0, 0] == pytest.approx(3.0)
    nodes[0].adopt(msg, keep_own=0.0)
    assert nodes[0].weights["w"][0, 0] == pytest.approx(4.0)


def hostile_payloads(node_weights):
    good = dict(node_weights)
    nan = {k: v.copy() for k, v in good.items()}
    nan["w"][0, 0] = np.nan
    huge = {k: v.copy() for k, v in good.items()}
    huge["b"][:] = 1e9
    wrong_shape = {"w": np.zeros((3, 2), np.float32), "b": good["b"]}
    return {
        "codec:bad-magic": b"\x00garbage" * 3,
        "codec:truncated": encode(WeightsMessage(MODEL, 0, "p1", 10, good))[:-7],
        "non-finite": encode(WeightsMessage(MODEL, 0, "p1", 10, nan)),
        "out-of-range": encode(WeightsMessage(MODEL, 0, "p1", 10, huge)),
        "tensor-shape": encode(WeightsMessage(MODEL, 0, "p1", 10, wrong_shape)),
        "model-mismatch": encode(WeightsMessage("other", 0, "p1", 10, good)),
        "sender-mismatch": encode(WeightsMessage(MODEL, 0, "p2", 10, good)),
    }


@pytest.mark.parametrize("reason", list(hostile_payloads(start_weights(1.0))))
def test_hostile_message_is_rejected_counted_and_changes_nothing(reason, caplog):
    nodes, _ = make_ring(3, [0.0, 5.0, 9.0])
    payload = hostile_payloads(nodes[1].weights)[reason]
    before = {k: v.copy() for k, v in nodes[0].weights.items()}
    with caplog.at_level("WARNING", logger="medswarm.node"):
        assert nodes[0].check("p1", payload, 0) is None
    assert nodes[0].stats.rejected[reason] == 1
    assert nodes[0].stats.accepted == 0
    for k in before:
        np.testing.assert_array_equal(nodes[0].weights[k], before[k])
    assert f"reason={reason}" in caplog.text and "peer=p0" in caplog.text


def test_a_fetched_model_whose_header_round_contradicts_its_announcement_is_rejected(caplog):
    nodes, _ = make_ring(3, [0.0, 3.0, 6.0])
    payload = encode(WeightsMessage(MODEL, 4, "p1", 10, start_weights(3.0)))
    with caplog.at_level("WARNING", logger="medswarm.node"):
        assert nodes[0].check("p1", payload, 5, exact_round=True) is None
    assert nodes[0].stats.rejected == {"wrong-round": 1} and nodes[0].stats.stale == 0
    assert "reason=wrong-round" in caplog.text
    # pushed (not announced), the same model is merely late: stale, not hostile
    assert nodes[0].check("p1", payload, 5) is None
    assert nodes[0].stats.stale == 1 and sum(nodes[0].stats.rejected.values()) == 1


def test_float16_encoding_halves_the_bytes():
    nodes, _ = make_ring(3, [0.0, 1.0, 2.0])
    nodes[0].weights = {"w": np.ones((64, 64), np.float32)}
    full = len(nodes[0].encode_model(0))
    nodes[0].float16 = True
    half = len(nodes[0].encode_model(0))
    assert half < 0.75 * full


def test_a_scaled_model_within_the_absolute_bound_is_rejected_by_its_norm(caplog):
    nodes, _ = make_ring(3, [0.3, 0.333, 0.3])
    scaled = {k: v * 1000 for k, v in nodes[1].weights.items()}  # max |x| 333 < 1e4
    payload = encode(WeightsMessage(MODEL, 0, "p1", 10, scaled))
    with caplog.at_level("WARNING", logger="medswarm.node"):
        assert nodes[0].check("p1", payload, 0) is None
    assert nodes[0].stats.rejected == {"norm-ratio": 1}
    assert "reason=norm-ratio" in caplog.text
    # the same model unscaled, or at a few times the norm, is accepted
    assert nodes[0].check("p1", nodes[1].encode_model(0), 0) is not None
    nodes[1].weights = {k: v * 5 for k, v in nodes[1].weights.items()}
    assert nodes[0].check("p1", nodes[1].encode_model(0), 0) is not None
    # the command line's factor 2 refuses x5 and x0.4, not x1.5
    from dataclasses import replace

    nodes[0].aggregation = replace(nodes[0].aggregation, max_norm_ratio=2.0)
    assert nodes[0].check("p1", nodes[1].encode_model(0), 0) is None
    for factor, accepted in ((0.4 / 5, False), (1.5 / 5, True)):
        nodes[1].weights = {k: v * factor for k, v in nodes[1].weights.items()}
        assert (nodes[0].check("p1", nodes[1].encode_model(0), 0) is not None) is accepted
        nodes[1].weights = {k: v / factor for k, v in nodes[1].weights.items()}
    assert nodes[0].stats.rejected == {"norm-ratio": 3}


def test_a_model_pointing_away_from_the_own_is_rejected_by_its_direction(caplog):
    from swarm.robust import Aggregation

    nodes, _ = make_ring(3, [0.3, 0.333, 0.3])
    nodes[0].aggregation = Aggregation("clipped", min_cosine=0.5)
    rng = np.random.default_rng(0)
    own = {k: v + rng.normal(0, 0.01, v.shape).astype(v.dtype) for k, v in nodes[0].weights.items()}
    nodes[0].weights = own
    flipped = {k: -v for k, v in own.items()}  # same norm, opposite direction
    noisy = {k: v + rng.normal(0, 3 * float(np.abs(v).mean()), v.shape).astype(v.dtype) for k, v in own.items()}
    with caplog.at_level("WARNING", logger="medswarm.node"):
        assert nodes[0].check("p1", encode(WeightsMessage(MODEL, 0, "p1", 10, flipped)), 0) is None
        assert nodes[0].check("p1", encode(WeightsMessage(MODEL, 0, "p1", 10, noisy)), 0) is None
    assert nodes[0].stats.rejected == {"direction": 2}
    assert "reason=direction" in caplog.text
    # a model nearby (as an honest neighbour's) passes; with the check off the flipped one does too
    near = {k: v + rng.normal(0, 0.1 * float(np.abs(v).mean()), v.shape).astype(v.dtype) for k, v in own.items()}
    assert nodes[0].check("p1", encode(WeightsMessage(MODEL, 0, "p1", 10, near)), 0) is not None
    nodes[0].aggregation = Aggregation("clipped")  # the check is off unless set
    assert nodes[0].check("p1", encode(WeightsMessage(MODEL, 0, "p1", 10, flipped)), 0) is not None


@pytest.mark.parametrize("kind, moved_at_most", [("mean", None), ("clipped", 1.0), ("median", 1.0),
                                                 ("trimmed", 1.0)])
def test_the_aggregation_setting_bounds_a_sign_flipped_neighbour(kind, moved_at_most):
    from swarm.robust import Aggregation

    ids = ["p0", "p1", "p2", "p3"]
    nodes = [SwarmNode(p, add_one, list(range(10)), MODEL, start_weights(v),
                       {q: 3 for q in ids if q != p}, aggregation=Aggregation(kind, max_norm_ratio=None))
             for p, v in zip(ids, [1.0, 1.2, 0.9, 1.1])]
    nodes[3].weights = {k: -100 * v for k, v in nodes[3].weights.items()}  # sign-flipped, x100
    received = {n.peer_id: nodes[0].check(n.peer_id, n.encode_model(0), 0) for n in nodes[1:]}
    nodes[0].mix(received)
    moved = abs(float(nodes[0].weights["w"][0, 0]) - 1.0)
    if moved_at_most is None:
        assert moved > 20  # plain gossip: a quarter of -110
    else:
        assert moved < moved_at_most


def test_adopting_several_final_models_takes_the_coordinate_median_with_the_own():
    from gossip.codec import WeightsMessage

    node = SwarmNode("a", lambda w, d, s: None, [0] * 10, "m", {"w": np.zeros(3, np.float32)}, {})
    node.weights = {"w": np.array([0.0, 1.0, 2.0], np.float32)}
    honest = WeightsMessage("m", 6, "b", 10, {"w": np.array([1.0, 1.0, 1.0], np.float32)})
    hostile = WeightsMessage("m", 6, "h", 10, {"w": np.array([-50.0, 90.0, 1e3], np.float32)})
    node.adopt_median([honest, hostile])
    assert node.weights["w"].tolist() == [0.0, 1.0, 2.0]  # between the honest values, never the hostile


def test_a_catch_up_model_may_have_grown_but_stays_bounded():
    # a peer back from an outage holds an old model; the swarm's has grown as it trained
    from dataclasses import replace

    from gossip.codec import digest
    from swarm.peer_state import accept_transfer
    from swarm.protocol_types import Fetch

    nodes, _ = make_ring(3, [0.3, 0.333, 0.3])
    nodes[0].aggregation = replace(nodes[0].aggregation, max_norm_ratio=2.0)

    def transfer(factor, catch_up):
        nodes[1].weights = {k: v * factor for k, v in start_weights(0.333).items()}
        payload = nodes[1].encode_model(30)
        fetch = Fetch("p1", 30, 0, digest(payload), len(payload), 5.0, catch_up)
        return accept_transfer(nodes[0], fetch, payload)[0]

    assert transfer(2.1, catch_up=False) is None  # a running exchange keeps the factor 2
    grown = transfer(2.1, catch_up=True)
    assert grown is not None and grown.round == 30
    assert transfer(4.5, catch_up=True) is None  # a catch-up is bounded too: by 2 x 2
    assert transfer(1 / 4.5, catch_up=True) is None
    assert nodes[0].stats.rejected == {"norm-ratio": 3}
