"""DP-SGD per hospital: the plan, the ledger (checkpoint and journal), private models and tasks."""

from __future__ import annotations

import math

import numpy as np
import pytest
from torch import nn

from gossip.codec import WeightsMessage
from gossip.errors import RejectedMessage
from gossip.validate import validate_weights
from swarm.checkpoint import decode_state, encode_state
from swarm.config import LearningConfig
from swarm.errors import ConfigError
from swarm.node import SwarmNode
from swarm.peer_state import restore_privacy, snapshot
from swarm.dp_sgd import private_model
from swarm.privacy import LedgerJournal, PrivacyConfig, PrivacyLedger, PrivateTraining, default_delta, plan
from swarm.task import Task, load_builtin_data, prepare
from swarm.training import supervised_fit


@pytest.fixture(scope="module")
def heart():
    """The heart data's four hospitals, with a private trainer (RDP: a fast accountant)."""
    learning = LearningConfig(data="heart", dp_epsilon=2.0, dp_accountant="rdp", rounds=4, batch_size=16)
    return learning, prepare(learning, None)


def training(heart, site=0, key=b"k" * 16, journal=None, **changes):
    learning, prepared = heart
    privacy = PrivacyConfig(**{"epsilon": 2.0, "accountant": "rdp", **changes})
    data = prepared.federation.sites[site].train
    dp = plan(privacy, len(data), learning.batch_size, learning.local_epochs, learning.rounds)
    return PrivateTraining(prepared.trainer, PrivacyLedger(dp, key=key), journal=journal), data


def test_the_planned_noise_fits_every_planned_round_and_no_more():
    dp = plan(PrivacyConfig(3.0), records=400, batch_size=16, local_epochs=1, rounds=5)  # PRV
    ledger = PrivacyLedger(dp)
    for r in range(5):
        assert ledger.affordable()
        ledger.charge(str(r), "w")
    assert 0.9 * 3.0 < ledger.spent() <= 3.0
    assert not ledger.affordable()
    assert dp.delta == default_delta(400) < 1 / 400 and dp.sample_rate == 1 / 25 and dp.steps_per_round == 25


def test_a_round_retrained_from_the_same_weights_is_charged_once_from_other_weights_twice():
    ledger = PrivacyLedger(plan(PrivacyConfig(3.0, noise=1.0, accountant="rdp"), 100, 10, 1, 3))
    assert ledger.charge("7", "a") and not ledger.charge("7", "a")
    assert ledger.charge("7", "b") and not ledger.charge("7", "b")
    assert sorted(ledger.entries) == ["7", "7#2"]
    assert ledger.history() == ((1.0, 0.1, 20),)


def test_the_ledger_travels_in_the_checkpoint_and_comes_back_with_the_same_spend(heart):
    fn, data = training(heart)
    start = {k: v.copy() for k, v in heart[1].initial.items()}
    node = SwarmNode("p", fn, data, heart[1].trainer.model_id, start, {})
    for r in range(2):
        node.weights = fn(node.weights, data, 100 + r).weights
    state = decode_state(b"".join(encode_state(snapshot(node, None, 1))))
    fresh, _ = training(heart, key=b"x" * 16)
    node2 = SwarmNode("p", fresh, data, heart[1].trainer.model_id, start, {})
    restore_privacy(node2, state)
    assert fresh.ledger.entries == fn.ledger.entries and fresh.ledger.key == fn.ledger.key
    assert fresh.last_spent == pytest.approx(fn.ledger.spent()) and fresh.last_spent > 0


def test_a_crash_after_the_charge_and_before_the_checkpoint_neither_loses_nor_recounts_the_round(heart, tmp_path):
    journal = LedgerJournal(tmp_path / "dp-ledger.json")
    fn, data = training(heart, journal=journal.save)
    weights = {k: v.copy() for k, v in heart[1].initial.items()}
    after0 = fn(weights, data, 10).weights
    checkpointed = fn.ledger.state()  # round 0's checkpoint
    released = fn(after0, data, 11).weights  # round 1 trained and served ... then the process dies
    # a new process: ledger from the checkpoint of round 0 and the journal
    again, _ = training(heart, key=b"other-key-000000")
    again.restore(checkpointed, journal.load())
    assert sorted(again.ledger.entries) == ["10", "11"]
    retrained = again(after0, data, 11).weights  # round 1 again, from the checkpoint's weights
    assert sorted(again.ledger.entries) == ["10", "11"]  # the same release: not charged again
    assert all(np.array_equal(retrained[k], released[k]) for k in released)


def test_the_noise_and_the_batches_come_from_the_secret_key_not_the_shared_seed(heart):
    weights = heart[1].initial
    a, data = training(heart, key=b"a" * 16)
    b, _ = training(heart, key=b"b" * 16)
    wa, wb = a(weights, data, 5).weights, b(weights, data, 5).weights
    assert any(not np.array_equal(wa[k], wb[k]) for k in wa)


def test_a_peer_past_its_budget_stops_training_and_returns_its_weights_unchanged(heart):
    fn, data = training(heart, epsilon=1.0, noise=2.0)  # a given noise: 3 rounds fit, not the 4 planned
    weights = heart[1].initial
    trained = 0
    for r in range(40):
        out = fn(weights, data, r).weights
        if fn.exhausted is not None:
            assert all(np.array_equal(out[k], weights[k]) for k in weights)
            break
        trained += 1
        weights = out
    assert fn.exhausted is not None and trained == 3
    summary = fn.summary()
    assert summary["dp_budget_exhausted"] and summary["dp_epsilon_spent"] <= 1.0
    assert summary["dp_rounds_charged"] == trained


def test_training_loss_is_not_released_under_dp(heart):
    fn, data = training(heart)
    result = fn(heart[1].initial, data, 1)
    assert math.isnan(result.loss) and math.isfinite(fn.last_loss)


def test_honest_private_models_pass_the_dp_direction_check_that_refused_them_and_a_sign_flip_still_fails(heart):
    """Two hospitals' private rounds from the same weights point apart (independent noise) but
    never opposite: the DP default (a sign test) mixes them where the old 0.5 refused them."""
    learning, prepared = heart
    models = []
    for site in (0, 1):
        fn, data = training(heart, site=site, key=bytes([site + 1]) * 16, noise=3.0)
        models.append(fn(prepared.initial, data, 0).weights)
    own, honest = models
    cosine = float(sum((own[k].astype(float) * honest[k]).sum() for k in own)
                   / math.sqrt(sum(np.square(own[k].astype(float)).sum() for k in own)
                               * sum(np.square(honest[k].astype(float)).sum() for k in own)))
    assert 0 < cosine < 0.5  # the noise, not the data, sets their angle
    flipped = {k: -v for k, v in honest.items()}

    def check(tensors, rule):
        validate_weights(WeightsMessage(prepared.trainer.model_id, 0, "b", 10, tensors), link_peer="b",
                         model_id=prepared.trainer.model_id, reference=own,
                         max_norm_ratio=rule.max_norm_ratio, min_cosine=rule.min_cosine)

    private = LearningConfig(data="heart", dp_epsilon=2.0).aggregation()
    check(honest, private)  # mixed
    with pytest.raises(RejectedMessage) as old:
        check(honest, LearningConfig(data="heart", dp_epsilon=2.0, min_cosine=0.5).aggregation())
    assert old.value.reason == "direction"
    with pytest.raises(RejectedMessage) as caught:
        check(flipped, private)
    assert caught.value.reason == "direction"


def test_batch_norms_become_group_norms_and_an_unsupported_layer_is_one_line():
    model = private_model(nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4)), "t")
    assert isinstance(model[1], nn.GroupNorm)
    with pytest.raises(ConfigError) as err:
        private_model(nn.Sequential(nn.LSTM(4, 4)), "lstm-task")
    assert "lstm-task" in str(err.value) and "\n" not in str(err.value)


def test_a_task_with_its_own_fit_needs_a_loss_to_be_private():
    from swarm.training import Trainer

    def fit(model, data, config, seed):
        return supervised_fit(model, data, config, seed)

    task = Task(name="mine", load=load_builtin_data, model=lambda spec: nn.Linear(spec.input_shape[0], 2), fit=fit)
    with pytest.raises(ConfigError, match="mine: its own fit cannot be made private"):
        Trainer((5,), 2, LearningConfig(data="heart").train_config(), task=task, private=True)
    with_loss = Task(name="mine", load=load_builtin_data, model=task.model, fit=fit,
                     loss=lambda model, x, y: nn.functional.cross_entropy(model(x), y))
    Trainer((5,), 2, LearningConfig(data="heart").train_config(), task=with_loss, private=True)


@pytest.mark.parametrize("changes, field", [
    ({"dp_noise": 1.0}, "dp_noise"),
    ({"dp_delta": 1e-5}, "dp_delta"),
    ({"dp_epsilon": -1.0}, "dp_epsilon"),
    ({"dp_epsilon": 1.0, "dp_accountant": "gdp"}, "dp_accountant"),
    ({"dp_epsilon": 1.0, "dp_delta": 2.0}, "dp_delta"),
])
def test_bad_dp_options_are_config_errors_naming_the_field(changes, field):
    with pytest.raises(ConfigError) as err:
        LearningConfig(data="heart", **changes)
    assert err.value.field == field


def test_dp_without_opacus_names_the_extra(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "opacus" else real(name, *a))
    with pytest.raises(ConfigError, match=r"medswarm\[dp\]"):
        LearningConfig(data="heart", dp_epsilon=1.0)


def test_an_infinite_epsilon_is_no_privacy():
    assert LearningConfig(data="heart", dp_epsilon=math.inf).privacy() is None


def test_an_unreadable_journal_refuses_to_start(tmp_path):
    (tmp_path / "dp-ledger.json").write_text("{not json")
    with pytest.raises(ConfigError, match="unreadable privacy ledger"):
        LedgerJournal(tmp_path / "dp-ledger.json").load()


def test_the_example_task_trains_privately_through_its_loss(heart):
    from pathlib import Path

    from swarm.datasets import ArrayDataset
    from swarm.task import load_task
    from swarm.training import Trainer

    task = load_task(str(Path(__file__).resolve().parents[2] / "examples" / "tiny_task.py") + ":task")
    trainer = Trainer((1, 8, 8), 2, LearningConfig(data="heart").train_config(), task=task, private=True)
    rng = np.random.default_rng(0)
    data = ArrayDataset(rng.random((40, 1, 8, 8), dtype=np.float32), (np.arange(40) % 2).astype(np.int64), 2)
    dp = plan(PrivacyConfig(3.0, accountant="rdp"), len(data), 16, 1, 2)
    fn = PrivateTraining(trainer, PrivacyLedger(dp))
    start = trainer.initial_weights(0)
    out = fn(start, data, 1).weights
    assert any(not np.array_equal(out[k], start[k]) for k in start) and len(fn.ledger.entries) == 1
