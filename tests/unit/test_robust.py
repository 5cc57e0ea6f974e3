"""Robust mixing (``swarm.robust``): one neighbour's influence is bounded, honest mixing unchanged."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swarm.averaging import Contribution, weighted_average
from swarm.errors import AveragingError, ConfigError
from swarm.robust import FEW_NEIGHBOURS_WIDENING, AGGREGATORS, Aggregation, clip_radius, clipped_mix, robust_mix

PROPERTY = settings(max_examples=40, deadline=None, derandomize=True, database=None)


def model(vector) -> dict[str, np.ndarray]:
    v = np.asarray(vector, dtype=np.float64)
    return {"w": v[:-1].reshape(-1, 1).copy(), "b": v[-1:].copy(), "steps": np.array(7, dtype=np.int64)}


def flat(weights) -> np.ndarray:
    return np.concatenate([weights["w"].ravel(), weights["b"]])


def neighbourhood(seed: int, k: int = 4, dim: int = 6, spread: float = 1.0):
    """An own model and ``k`` honest neighbours around it, with Metropolis-like weights."""
    rng = np.random.default_rng(seed)
    centre = rng.normal(size=dim)
    own = Contribution("self", model(centre), 1.0 / (k + 1))
    others = [Contribution(f"n{j}", model(centre + spread * rng.normal(size=dim)), 1.0 / (k + 1))
              for j in range(k)]
    return own, others


@PROPERTY
@given(seed=st.integers(0, 10_000), scale=st.floats(-1e4, 1e4).filter(lambda s: abs(s) > 10))
def test_clipping_bounds_one_hostile_neighbours_pull_by_its_weight_times_the_radius(seed, scale):
    own, honest = neighbourhood(seed, k=3)
    hostile = Contribution("evil", {k: v * scale if v.dtype.kind == "f" else v
                                    for k, v in honest[0].weights.items()}, honest[0].weight)
    neighbours = [hostile, *honest[1:]]
    x = flat(own.weights)
    distances = [np.linalg.norm(flat(c.weights) - x) for c in neighbours]
    tau = clip_radius(distances, 3.0)
    result = flat(clipped_mix(own, neighbours, 3.0))
    # the honest ones are unclipped here only if within tau; take their clipped pull exactly
    honest_pull = sum(c.weight * (flat(c.weights) - x) * min(1.0, tau / d)
                      for c, d in zip(neighbours[1:], distances[1:]))
    hostile_pull = result - x - honest_pull
    assert np.linalg.norm(hostile_pull) <= hostile.weight * tau * (1 + 1e-9)
    # and tau is set by the honest neighbours, not by the hostile one
    assert tau <= 3.0 * max(distances[1:]) + 1e-12


def test_clipped_equals_the_weighted_mean_with_honest_neighbours_at_similar_distances():
    own, others = neighbourhood(3, k=4, spread=1.0)
    others = [Contribution(c.peer, c.weights, w) for c, w in zip(others, [0.1, 0.2, 0.15, 0.25])]
    own = Contribution(own.peer, own.weights, 0.3)
    mean = weighted_average([own, *others])
    clipped = clipped_mix(own, others, 3.0)
    for name in mean:
        np.testing.assert_allclose(clipped[name], mean[name], rtol=1e-12, atol=1e-12)


def test_clip_radius_is_a_multiple_of_the_lower_median_distance():
    # two neighbours: the nearer one's distance, widened (a far hostile one is still clipped)
    assert clip_radius([1.0, 100.0], 3.0) == 3.0 * FEW_NEIGHBOURS_WIDENING < 100.0
    assert clip_radius([4.0], 1.5) == 4.0 * 1.5 * FEW_NEIGHBOURS_WIDENING
    assert clip_radius([100.0, 2.0, 1.0], 2.0) == 4.0
    assert clip_radius([5.0, 1.0, 2.0, 1e9], 1.0) == 2.0
    with pytest.raises(AveragingError):
        clip_radius([], 3.0)
    with pytest.raises(AveragingError):
        clip_radius([1.0, float("nan")], 3.0)


@pytest.mark.parametrize("kind", AGGREGATORS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_rule_is_invariant_to_the_neighbours_order(kind, seed):
    own, others = neighbourhood(seed, k=4)
    others = [Contribution(c.peer, c.weights, w) for c, w in zip(others, [0.1, 0.2, 0.15, 0.25])]
    rule = Aggregation(kind)
    a = robust_mix(rule, own, others)
    b = robust_mix(rule, own, list(reversed(others)))
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", AGGREGATORS)
def test_every_rule_returns_identical_models_unchanged(kind):
    same = model(np.linspace(-2, 3, 6))
    out = robust_mix(Aggregation(kind), Contribution("self", same, 0.4),
                     [Contribution(f"n{j}", same, 0.2) for j in range(3)])
    for name in same:
        np.testing.assert_allclose(out[name], same[name], rtol=1e-12)
        assert out[name].dtype == same[name].dtype


@pytest.mark.parametrize("kind", AGGREGATORS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_rule_stays_within_the_range_of_its_inputs(kind, seed):
    own, others = neighbourhood(seed, k=3)
    out = flat(robust_mix(Aggregation(kind), own, others))
    stack = np.stack([flat(c.weights) for c in [own, *others]])
    assert np.all(out >= stack.min(axis=0) - 1e-12) and np.all(out <= stack.max(axis=0) + 1e-12)


@pytest.mark.parametrize("kind", ["trimmed", "median"])
def test_trimmed_and_median_ignore_one_outlier(kind):
    own, honest = neighbourhood(7, k=3, spread=0.5)
    outlier = Contribution("evil", model(np.full(6, 1e6)), 0.25)
    out = flat(robust_mix(Aggregation(kind), own, [*honest, outlier]))
    stack = np.stack([flat(c.weights) for c in [own, *honest]])
    assert np.all(out >= stack.min(axis=0)) and np.all(out <= stack.max(axis=0))


def test_mean_follows_the_outlier_and_clipped_does_not():
    own, honest = neighbourhood(7, k=3, spread=0.5)
    outlier = Contribution("evil", model(np.full(6, 1e6)), 0.25)
    mean = flat(robust_mix(Aggregation("mean"), own, [*honest, outlier]))
    clipped = flat(robust_mix(Aggregation("clipped"), own, [*honest, outlier]))
    x = flat(own.weights)
    assert np.linalg.norm(mean - x) > 1e5
    assert np.linalg.norm(clipped - x) < 5.0


def test_no_neighbour_leaves_the_own_model():
    own, _ = neighbourhood(1)
    out = clipped_mix(own, [], 3.0)
    np.testing.assert_array_equal(flat(out), flat(own.weights))


def test_a_bad_neighbour_is_named():
    own, others = neighbourhood(2, k=2)
    broken = {k: v.copy() for k, v in others[0].weights.items()}
    broken["b"][0] = np.nan
    with pytest.raises(AveragingError) as caught:
        clipped_mix(own, [Contribution("bad", broken, 0.2), others[1]], 3.0)
    assert caught.value.peer == "bad" and caught.value.tensor == "b"


@pytest.mark.parametrize("kwargs, field", [
    ({"kind": "krum"}, "aggregator"),
    ({"kind": "clipped", "clip_factor": 0.5}, "clip_factor"),
    ({"kind": "clipped", "clip_factor": float("inf")}, "clip_factor"),
    ({"kind": "trimmed", "trim": 0.5}, "trim"),
])
def test_a_bad_aggregation_is_a_config_error_naming_the_field(kwargs, field):
    with pytest.raises(ConfigError) as caught:
        Aggregation(**kwargs)
    assert caught.value.field == field


def test_the_direction_check_is_on_from_the_command_line_config_off_by_minus_one_and_bounded():
    from swarm.config import LearningConfig

    assert Aggregation().min_cosine is None  # off unless set: toy models started at zeros
    assert LearningConfig().aggregation().min_cosine == 0.5
    assert LearningConfig(min_cosine=0.8).aggregation().min_cosine == 0.8
    assert LearningConfig(min_cosine=-1.0).aggregation().min_cosine is None
    assert LearningConfig().min_cosine == 0.5  # resolved in the config, so reports and launch see it
    for bad in (1.5, -2.0):
        with pytest.raises(ConfigError, match="min_cosine"):
            LearningConfig(min_cosine=bad)


def test_under_dp_the_direction_check_defaults_to_a_sign_test_unless_given():
    from swarm.config import LearningConfig

    assert LearningConfig(dp_epsilon=1.0).aggregation().min_cosine == 0.0
    assert LearningConfig(dp_epsilon=1.0).min_cosine == 0.0
    assert LearningConfig(dp_epsilon=float("inf")).aggregation().min_cosine == 0.5  # inf = no privacy
    assert LearningConfig(dp_epsilon=1.0, min_cosine=0.3).aggregation().min_cosine == 0.3
    assert LearningConfig(dp_epsilon=1.0, min_cosine=-1.0).aggregation().min_cosine is None


def test_the_command_line_norm_bound_is_tighter_than_the_bare_dataclass_and_must_exceed_one():
    from swarm.config import LearningConfig

    assert Aggregation().max_norm_ratio == 10.0  # toy models started at zeros grow from nothing
    assert LearningConfig().aggregation().max_norm_ratio == 2.0
    assert LearningConfig(max_norm_ratio=3.0).aggregation().max_norm_ratio == 3.0
    for bad in (1.0, 0.5, float("inf")):
        with pytest.raises(ConfigError, match="max_norm_ratio"):
            LearningConfig(max_norm_ratio=bad)


def test_the_clip_factor_comes_from_the_one_config_and_below_one_is_refused():
    from swarm.config import LearningConfig

    # behind the norm and direction checks the command line clips more loosely than the bare rule
    assert LearningConfig().aggregation().clip_factor == 3.0 > Aggregation().clip_factor == 1.5
    assert LearningConfig(clip_factor=2.0).aggregation().clip_factor == 2.0
    with pytest.raises(ConfigError, match="clip_factor"):
        LearningConfig(clip_factor=0.9)
