"""The clipping radius learnt over time: with one neighbour heard, recent accepted distances set it."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swarm.averaging import Contribution, weighted_average
from swarm.errors import AveragingError
from swarm.node import SwarmNode
from gossip.codec import WeightsMessage
from swarm.robust import (CLIP_HISTORY, FEW_NEIGHBOURS_WIDENING, HISTORY_MIN, Aggregation, clip_radius, clipped_mix,
                          robust_mix, robust_mix_measured)

PROPERTY = settings(max_examples=40, deadline=None, derandomize=True, database=None)


def model(vector) -> dict[str, np.ndarray]:
    return {"w": np.asarray(vector, dtype=np.float64).copy(), "steps": np.array(3, dtype=np.int64)}


def partner_scaled(seed: int, scale: float, dim: int = 8):
    """An own model and one partner sending an honest neighbour's model times ``scale``."""
    rng = np.random.default_rng(seed)
    centre = rng.normal(size=dim)
    honest = centre + 0.1 * rng.normal(size=dim)
    return Contribution("self", model(centre), 0.5), Contribution("evil", model(scale * honest), 0.5), \
        float(np.linalg.norm(honest - centre))


@PROPERTY
@given(seed=st.integers(0, 10_000), scale=st.floats(1.5, 50.0))
def test_one_scaled_partner_is_clipped_to_the_historys_radius(seed, scale):
    own, hostile, honest_distance = partner_scaled(seed, scale)
    history = [honest_distance] * CLIP_HISTORY
    out = clipped_mix(own, [hostile], 3.0, history)
    moved = np.linalg.norm(out["w"] - own.weights["w"])
    # the pull is the partner's weight times tau = 3 x the honest distance, whatever the scale
    assert moved <= 0.5 * 3.0 * honest_distance * (1 + 1e-9)
    hostile_distance = np.linalg.norm(hostile.weights["w"] - own.weights["w"])
    if hostile_distance > 3.0 * honest_distance:  # clipped: exactly on the radius
        assert moved == pytest.approx(0.5 * 3.0 * honest_distance, rel=1e-9)
    np.testing.assert_array_equal(out["steps"], own.weights["steps"])


def test_without_history_one_neighbour_is_mixed_as_today():
    own, hostile, _ = partner_scaled(0, 20.0)
    mean = weighted_average([own, hostile])
    for history in ((), None):
        out = clipped_mix(own, [hostile], 3.0) if history is None else clipped_mix(own, [hostile], 3.0, history)
        np.testing.assert_allclose(out["w"], mean["w"], rtol=1e-12)


def test_the_history_joins_only_a_single_neighbours_distance():
    far = [1e3] * CLIP_HISTORY
    assert clip_radius([1.0, 100.0], 3.0, far) == clip_radius([1.0, 100.0], 3.0)
    assert clip_radius([5.0, 1.0, 2.0], 3.0, far) == clip_radius([5.0, 1.0, 2.0], 3.0)
    assert clip_radius([100.0], 3.0, [2.0] * HISTORY_MIN) == 3.0 * 2.0  # five values: no widening
    # a history too short to have a typical distance: one neighbour's own, widened, as without one
    assert clip_radius([100.0], 3.0, [2.0] * (HISTORY_MIN - 1)) == clip_radius([100.0], 3.0) == \
        3.0 * 100.0 * FEW_NEIGHBOURS_WIDENING
    with pytest.raises(AveragingError):
        clip_radius([1.0], 3.0, [float("inf")] * HISTORY_MIN)


def test_a_hostile_third_of_the_history_cannot_raise_the_radius():
    # one partner of three is hostile: its huge distances fill a third of the history
    honest = [1.0, 1.2, 0.9, 1.1, 1.0, 0.8, 1.3, 1.0, 1.1, 0.9, 1.2]
    history = honest + [1e6] * 5
    assert clip_radius([1e6], 3.0, history) <= 3.0 * max(honest)


def test_measured_mixing_reports_distances_for_clipped_only():
    own, hostile, _ = partner_scaled(1, 4.0)
    clipped = robust_mix_measured(Aggregation("clipped", clip_factor=3.0), own, [hostile], [0.1] * 4)
    assert clipped.distances == pytest.approx([np.linalg.norm(hostile.weights["w"] - own.weights["w"])])
    np.testing.assert_array_equal(
        clipped.weights["w"], robust_mix(Aggregation("clipped", clip_factor=3.0), own, [hostile], [0.1] * 4)["w"])
    for kind in ("mean", "trimmed", "median"):
        assert robust_mix_measured(Aggregation(kind), own, [hostile], [0.1] * 4).distances == ()
    mean = robust_mix_measured(Aggregation("mean"), own, [hostile], [1e-9] * 16)
    np.testing.assert_allclose(mean.weights["w"], weighted_average([own, hostile])["w"], rtol=1e-12)


def _node(kind: str) -> SwarmNode:
    return SwarmNode("self", lambda *a: None, [0] * 4, "toy", {"w": np.ones(4, dtype=np.float32)}, {"p": 1},
                     aggregation=Aggregation(kind, clip_factor=3.0))


@pytest.mark.parametrize("kind, kept", [("clipped", CLIP_HISTORY), ("mean", 0)])
def test_a_node_keeps_a_bounded_history_of_accepted_distances(kind, kept):
    node = _node(kind)
    for i in range(CLIP_HISTORY + 9):
        offer = WeightsMessage("toy", i, "p", 4, {"w": node.weights["w"] + np.float32(0.01 * (i + 1))})
        node.mix({"p": offer})
    assert len(node.distance_history) == kept
    if kept:  # the last accepted partners' distances, oldest dropped first
        assert node.distance_history[-1] > node.distance_history[0]
