"""The task API: loading a --task, checking its pieces, and running a custom one."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from swarm.config import LearningConfig
from swarm.datasets import ArrayDataset
from swarm.errors import ConfigError
from swarm.models import ModelSpec, build_model, group_norm
from swarm.partition import Federation, Site
from swarm.task import DataRequest, Task, as_task, load_task, prepare
from swarm.training import TrainConfig, Trainer


def tiny_federation(request: DataRequest) -> Federation:
    rng = np.random.default_rng(request.seed)

    def data(n: int) -> ArrayDataset:
        y = np.arange(n, dtype=np.int64) % 2
        x = (rng.normal(size=(n, 3)) + y[:, None]).astype(np.float32)
        return ArrayDataset(x, y, 2)

    sites = [Site(i, f"s{i}", data(12), data(4)) for i in range(request.n_sites or 2)]
    central = data(24)
    return Federation("tiny", sites, data(6), central, 2, (3,))


class Linear(nn.Module):
    def __init__(self, features: int, classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(features, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


def linear_model(spec: ModelSpec) -> nn.Module:
    return Linear(spec.input_shape[0], spec.num_classes)


def add_one_fit(model: nn.Module, data: ArrayDataset, config: TrainConfig, seed: int) -> float:
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    return 0.25


TASK_SOURCE = '''
from swarm.task import Task
from tests.unit.test_task import tiny_federation, linear_model

task = Task(name="from-file", load=tiny_federation, model=linear_model)

class Incomplete:
    def load(self, request):
        return None

class WrongFit:
    def load(self, request):
        return None
    def model(self, spec):
        return None
    def fit(self, model):
        return 0.0

not_a_task = 42
'''


@pytest.fixture
def task_file(tmp_path):
    path = tmp_path / "my_task.py"
    path.write_text(TASK_SOURCE)
    return path


def test_a_task_loads_from_a_file_path(task_file):
    task = load_task(f"{task_file}:task")
    assert task.name == "from-file"
    assert task.load is tiny_federation


def test_a_task_loads_from_a_module_attribute():
    task = load_task("tests.unit.test_task:EXAMPLE")
    assert task.name == "module-task"


@pytest.mark.parametrize("attr, missing", [
    ("Incomplete", "no 'model'"),
    ("WrongFit", "'fit' must take fit(model, data, config, seed)"),
    ("not_a_task", "no 'load'"),
    ("absent", "has no attribute 'absent'"),
])
def test_a_nonconforming_task_is_a_one_line_error_naming_the_missing_piece(task_file, attr, missing):
    with pytest.raises(ConfigError) as err:
        load_task(f"{task_file}:{attr}")
    assert err.value.field == "task"
    assert missing in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("text, message", [
    ("no_colon", "expected module:attr"),
    ("no_such_module_xyz:task", "cannot import no_such_module_xyz"),
    ("missing/file.py:task", "no such file"),
])
def test_an_unimportable_task_is_a_config_error(text, message):
    with pytest.raises(ConfigError, match=message):
        load_task(text)


def test_a_task_file_that_raises_on_import_is_a_config_error(tmp_path):
    path = tmp_path / "broken.py"
    path.write_text("raise RuntimeError('boom')\n")
    with pytest.raises(ConfigError, match="importing .*broken.py failed .*RuntimeError: boom"):
        load_task(f"{path}:task")


def test_the_learning_config_checks_the_task_before_anything_runs(task_file):
    with pytest.raises(ConfigError, match="no 'model'"):
        LearningConfig(task=f"{task_file}:Incomplete")


@pytest.mark.parametrize("command", ["simulate", "launch"])
def test_a_broken_task_stops_the_command_with_one_line_before_anything_starts(task_file, tmp_path, capsys,
                                                                              command):
    from peers.cli import main

    out = tmp_path / "out"
    assert main([command, "--task", f"{task_file}:Incomplete", "--quiet", "--out", str(out)]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no 'model'" in err
    assert not out.exists()


def test_a_class_with_load_and_model_methods_is_a_task():
    class Mine:
        name = "mine"

        def load(self, request):
            return tiny_federation(request)

        def model(self, spec):
            return linear_model(spec)

    task = as_task(Mine)
    assert task.name == "mine" and task.metrics is None


def test_the_trainer_uses_the_tasks_fit_and_reports_its_extra_metrics():
    task = Task("t", tiny_federation, linear_model, fit=add_one_fit,
                metrics=lambda y, p: {"positives": float(np.sum(p.argmax(1) == 1))})
    fed = tiny_federation(DataRequest("x", 2, "iid"))
    trainer = Trainer(fed.input_shape, 2, TrainConfig(), task=task)
    start = trainer.initial_weights(3)
    result = trainer.train(start, fed.sites[0].train, seed=0)
    assert result.loss == 0.25 and result.samples == 12
    assert np.allclose(result.weights["fc.weight"], start["fc.weight"] + 1)
    metrics = trainer.evaluate(result.weights, fed.global_test)
    assert set(metrics.extra) == {"positives"}


def test_initial_weights_are_the_model_built_under_the_seed():
    trainer = Trainer((5,), 2, TrainConfig())
    torch.manual_seed(11)
    expected = build_model((5,), 2).state_dict()
    got = trainer.initial_weights(11)
    assert all(np.array_equal(got[k], expected[k].numpy()) for k in expected)
    assert not np.array_equal(trainer.initial_weights(12)["net.0.weight"], got["net.0.weight"])


def _reshaping_fit(model: nn.Module, data: ArrayDataset, config: TrainConfig, seed: int) -> float:
    model.fc = nn.Linear(3, 7)  # replaces the layer instead of training it
    return 0.5


@pytest.mark.parametrize("task, message", [
    (Task("bad-load", lambda r: [1, 2], linear_model), "load\\(request\\) returned a list"),
    (Task("bad-model", tiny_federation, lambda s: "net"), "model\\(spec\\) returned a str"),
    (Task("bad-predict", tiny_federation, linear_model, predict=lambda m, d: np.zeros((1, 5))),
     "predict returned shape"),
    (Task("raising", tiny_federation, lambda s: 1 / 0), "model\\(spec\\) failed \\(ZeroDivisionError"),
    (Task("fit-raises", tiny_federation, linear_model, fit=lambda m, d, c, s: {}["lr"]),
     "fit\\(model, data, config, seed\\) failed on 4 training rows \\(KeyError"),
    (Task("fit-nan", tiny_federation, linear_model, fit=lambda m, d, c, s: float("nan")),
     "fit returned the loss nan"),
    (Task("fit-reshapes", tiny_federation, linear_model, fit=_reshaping_fit), "fit changed the model's shape"),
])
def test_prepare_catches_a_task_that_misbehaves_before_round_0(monkeypatch, task, message):
    monkeypatch.setattr("swarm.task.load_task", lambda text: task)
    with pytest.raises(ConfigError, match=message):
        prepare(LearningConfig(data="x", partition="iid", task="patched:task"), 2)


def test_prepare_builds_the_data_trainer_and_seeded_weights_of_a_task(monkeypatch):
    monkeypatch.setattr("swarm.task.load_task", lambda text: EXAMPLE)
    prepared = prepare(LearningConfig(data="x", partition="iid", seed=4, task="patched:task"), 3)
    assert len(prepared.federation.sites) == 3
    assert prepared.trainer.task is EXAMPLE
    assert np.array_equal(prepared.initial["fc.weight"], prepared.trainer.initial_weights(4)["fc.weight"])


def test_heart_sites_without_peers_gives_one_peer_per_hospital():
    from swarm.config import SimSetup
    from swarm.simulate import SimConfig, Simulation

    sim = Simulation(SimConfig(SimSetup(arms=("local",)), LearningConfig(data="heart", rounds=1)))
    assert sim.n == 4
    assert [s.name for s in sim.federation.sites] == ["cleveland", "hungarian", "switzerland", "va"]


def test_group_norm_replaces_every_batch_norm():
    model = nn.Sequential(nn.Conv2d(1, 12, 3), nn.BatchNorm2d(12), nn.Sequential(nn.BatchNorm1d(6)))
    group_norm(model)
    norms = [m for m in model.modules() if isinstance(m, (nn.GroupNorm, nn.modules.batchnorm._BatchNorm))]
    assert [type(m) for m in norms] == [nn.GroupNorm, nn.GroupNorm]
    assert [m.num_groups for m in norms] == [4, 2]


@pytest.mark.parametrize("arch, shape, message", [
    ("mlp", (1, 8, 8), "mlp takes feature vectors"),
    ("resnet18", (10,), "resnet18 takes images"),
    ("densenet121", (1, 16, 16), "at least 32x32"),
    ("vgg", (1, 8, 8), "unknown model"),
])
def test_a_model_that_does_not_fit_the_data_is_a_config_error(arch, shape, message):
    with pytest.raises(ConfigError, match=message):
        build_model(shape, 2, arch)


EXAMPLE = Task(name="module-task", load=tiny_federation, model=linear_model)
