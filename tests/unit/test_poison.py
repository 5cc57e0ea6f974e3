"""Model poisoning: each kind serves what it claims, and the attacker's own model stays honest."""

from __future__ import annotations

import numpy as np
import pytest

from gossip.codec import WeightsMessage, decode
from swarm.attacks import Attack
from swarm.poison import HostileNode, little_is_enough, noisy, poisoned, scaled, sign_flipped, zeroed
from tests.fakes import FakeData

WEIGHTS = {"w": np.array([[1.0, -2.0], [0.5, 4.0]], dtype=np.float32),
           "steps": np.array([7, 9], dtype=np.int64)}


def test_sign_flip_scale_and_zeros_change_floating_tensors_only():
    for out, expected in [(sign_flipped(WEIGHTS), -WEIGHTS["w"]), (scaled(WEIGHTS, 5.0), 5 * WEIGHTS["w"]),
                          (zeroed(WEIGHTS), np.zeros((2, 2)))]:
        assert out["w"].dtype == np.float32 and np.array_equal(out["w"], expected)
        assert out["steps"].dtype == np.int64 and np.array_equal(out["steps"], WEIGHTS["steps"])
    assert np.array_equal(WEIGHTS["w"], [[1.0, -2.0], [0.5, 4.0]])  # the input is untouched


def test_noise_is_seeded_and_of_the_asked_spread():
    big = {"w": np.zeros(20_000, dtype=np.float32)}
    a = noisy(big, 0.3, np.random.default_rng(5))["w"]
    b = noisy(big, 0.3, np.random.default_rng(5))["w"]
    c = noisy(big, 0.3, np.random.default_rng(6))["w"]
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert abs(float(a.std()) - 0.3) < 0.01 and abs(float(a.mean())) < 0.01


def test_a_little_is_enough_is_the_mean_minus_z_standard_deviations():
    models = [{"w": np.array([1.0, 10.0], dtype=np.float32)}, {"w": np.array([3.0, 10.0], dtype=np.float32)}]
    assert np.allclose(little_is_enough(models, 1.0)["w"], [1.0, 10.0])  # mean 2 and 10, std 1 and 0
    assert np.allclose(little_is_enough(models, 2.5)["w"], [-0.5, 10.0])
    assert np.array_equal(little_is_enough(models[:1], 1.0)["w"], models[0]["w"])  # no spread: itself
    with pytest.raises(ValueError):
        little_is_enough([], 1.0)


def test_only_model_kinds_poison_a_model():
    with pytest.raises(ValueError, match="flood"):
        poisoned(Attack(0, "flood"), WEIGHTS, [], np.random.default_rng(0))


def node(*attacks: Attack) -> HostileNode:
    def never(*_):
        raise AssertionError("not trained here")

    return HostileNode("peer-1", never, FakeData(1, 30), "m", WEIGHTS, {"peer-0": 2, "peer-2": 2},
                       attacks=attacks, rng=np.random.default_rng(0))


@pytest.mark.parametrize("attack, expected", [
    (Attack(1, "signflip"), -WEIGHTS["w"]),
    (Attack(1, "scale", 5.0), 5 * WEIGHTS["w"]),
    (Attack(1, "zeros"), np.zeros((2, 2))),
    (Attack(1, "alie"), WEIGHTS["w"]),  # nothing received yet: the own model has no spread
])
def test_a_hostile_node_serves_the_poisoned_model_and_keeps_its_own(attack, expected):
    hostile = node(attack, Attack(1, "flood"))
    served = decode(hostile.encode_model(3))
    assert served.round == 3 and served.sender == "peer-1" and served.sample_count == 30
    assert np.array_equal(served.tensors["w"], expected)
    assert np.array_equal(served.tensors["steps"], WEIGHTS["steps"])
    assert np.array_equal(hostile.weights["w"], WEIGHTS["w"])


def test_a_hostile_node_with_only_message_attacks_serves_its_own_model():
    served = decode(node(Attack(1, "forge-stop")).encode_model(0))
    assert np.array_equal(served.tensors["w"], WEIGHTS["w"])


def test_alie_builds_on_the_models_it_last_mixed():
    hostile = node(Attack(1, "alie", 1.0))
    other = {"w": np.array([[3.0, -2.0], [0.5, 2.0]], dtype=np.float32), "steps": WEIGHTS["steps"]}
    before = {k: v.copy() for k, v in hostile.weights.items()}
    hostile.mix({"peer-0": WeightsMessage("m", 0, "peer-0", 30, other)}, measure=False)
    served = decode(hostile.encode_model(0)).tensors["w"]
    assert np.allclose(served, little_is_enough([hostile.weights, other], 1.0)["w"])
    assert not np.allclose(served, hostile.weights["w"]) and not np.allclose(hostile.weights["w"], before["w"])
