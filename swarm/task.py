"""The task API: what a swarm trains, and how.

A :class:`Task` bundles five plain functions (and an optional sixth, ``loss``, for DP):

``load(request) -> Federation``
    The sites' data (each site's train and local test split, the global test set when there
    is one), from a :class:`DataRequest` (``--data`` and the options that go with it).
``model(spec) -> torch.nn.Module``
    A fresh model for a :class:`~swarm.models.ModelSpec` (input shape and classes from the
    data, ``--model``, ``--norm``). It is called under ``torch.manual_seed(seed)``, so every
    peer of a swarm starts from the same weights.
``fit(model, data, config, seed) -> float``
    One round of local training, in place; returns the mean training loss. Default:
    :func:`swarm.training.supervised_fit`.
``predict(model, data) -> (N, K) probabilities``
    Default :func:`swarm.training.softmax_predict`; medswarm computes loss, accuracy and
    AUROC from it.
``metrics(labels, probabilities) -> {name: value}``
    Optional extra figures, reported beside the built-in ones.
``loss(model, x, y) -> mean loss of the batch``
    Optional: what DP-SGD minimises under ``--dp-epsilon`` (default: cross-entropy of the
    logits). A private round draws its own batches, clips each record's gradient and adds
    noise, so a task's own ``fit`` cannot be made private; a task with its own ``fit`` must
    give a ``loss`` to be trained privately.

The built-in data sets are one such task (:func:`builtin_task`); ``--task module:attr`` or
``--task path/to/file.py:attr`` names another (:func:`load_task`): a :class:`Task`, or any
object (or class) with those attributes. A task is checked when the configuration is
built, and its ``fit`` and ``predict`` run once on a few rows, so a missing or failing piece is a
one-line ``ConfigError`` before round 0.

Example (``examples/tiny_task.py`` is a complete one)::

    from swarm.task import Task, load_builtin_data

    task = Task(name="tiny", load=load_builtin_data, model=lambda spec: MyNet(spec.num_classes))
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
from torch import nn

from swarm.errors import ConfigError, DataError, SwarmError
from swarm.models import ModelSpec, builtin_model
from swarm.partition import Federation
from swarm.weights import Weights
from swarm.training import FitFn, MetricsFn, PredictFn, Trainer, softmax_predict, supervised_fit

#: ``loss(model, x, y) -> mean loss``: what DP-SGD minimises (``swarm.privacy``)
LossFn = Callable[[nn.Module, Any, Any], Any]

if TYPE_CHECKING:
    from swarm.config import LearningConfig

#: ``load(request) -> Federation``
LoadFn = Callable[["DataRequest"], Federation]
#: ``model(spec) -> torch.nn.Module``
ModelFn = Callable[[ModelSpec], nn.Module]


@dataclass(frozen=True)
class DataRequest:
    """What a task's ``load`` is asked for: the data options every peer of a swarm shares.

    Attributes
    ----------
    data: ``--data``: a shipped name, a ``.npz`` path or a ``.csv`` path (or anything the
        task understands).
    n_sites: how many sites to make; ``None`` with ``partition="sites"`` means the data's
        own sites.
    partition: ``--partition`` text (``iid``, ``dirichlet:0.5``, ``sites`` ...).
    seed: the swarm's seed (splits are drawn from it).
    site_shift: per-site scanner shift strength for images (simulation only).
    label_column: ``--label-column``: the target of a tabular CSV.
    image_size: ``--image-size``: images are resized to this square size.
    channels: ``--channels``: 1 or 3; ``None`` follows the files.
    window: ``--window C,W``: DICOM windowing (centre, width) overriding the files'.
    local_test_fraction: share of each site's rows kept as its local test split.
    """

    data: str
    n_sites: int | None
    partition: str
    seed: int = 0
    site_shift: float = 0.0
    label_column: str | None = None
    image_size: int | None = None
    channels: int | None = None
    window: tuple[float, float] | None = None
    local_test_fraction: float = 0.2


@dataclass(frozen=True)
class Task:
    """What a swarm trains: data loading, model, local training, prediction, extra metrics.

    Every peer of a swarm must run the same task (the model identifier travelling with each
    model catches a different architecture). See the module docstring for each function.
    """

    name: str
    load: LoadFn
    model: ModelFn
    fit: FitFn = supervised_fit
    predict: PredictFn = softmax_predict
    metrics: MetricsFn | None = None
    loss: LossFn | None = None


def check_private(task: Task) -> None:
    """ConfigError (field ``task``) if ``task`` has its own ``fit`` and no ``loss``: DP-SGD
    draws the batches, clips and adds noise itself, so it needs the loss alone."""
    if task.fit is not supervised_fit and task.loss is None:
        raise ConfigError("task", f"{task.name}: its own fit cannot be made private; give the task a "
                                  "loss(model, x, y) for DP-SGD to minimise")


def load_builtin_data(request: DataRequest) -> Federation:
    """The built-in data loading: MedMNIST names or ``.npz`` files, ``heart``, and CSV files
    (an image folder's labels, or a table with ``--label-column``).

    Raises
    ------
    ConfigError, DataError
        For invalid options or unreadable data; the message names the file (and row).
    """
    from swarm.partition import build_federation, parse_partition

    spec = parse_partition(request.partition)
    if request.data.lower().endswith(".csv"):
        from swarm.csv_data import load_csv_federation

        return load_csv_federation(request, spec)
    for name in ("label_column", "image_size", "channels", "window"):
        if getattr(request, name) is not None:
            raise ConfigError(name, "applies to --data PATH.csv only")
    return build_federation(request.data, request.n_sites, spec, seed=request.seed,
                            site_shift=request.site_shift, local_test_fraction=request.local_test_fraction)


def builtin_task() -> Task:
    """The task of the shipped data sets and CSV files, with the built-in models (``--model``)."""
    return Task(name="builtin", load=load_builtin_data, model=builtin_model)


# ------------------------------------------------------------------ loading a --task


_ARITY = {"load": 1, "model": 1, "fit": 4, "predict": 2, "metrics": 2, "loss": 3}
_SHAPES = {"load": "load(request)", "model": "model(spec)", "fit": "fit(model, data, config, seed)",
           "predict": "predict(model, data)", "metrics": "metrics(labels, probabilities)",
           "loss": "loss(model, x, y)"}


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def _import_file(path: Path, text: str) -> Any:
    if not path.is_file():
        raise ConfigError("task", f"{text}: no such file {path}")
    resolved = path.resolve()
    name = "medswarm_task_" + hashlib.blake2b(str(resolved).encode(), digest_size=6).hexdigest()
    if name in sys.modules:  # loaded once per process, like any imported module
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, resolved)
    if spec is None or spec.loader is None:
        raise ConfigError("task", f"{text}: {path} is not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # the user's code: any failure is a configuration error
        del sys.modules[name]
        raise ConfigError("task", f"{text}: importing {path} failed ({_one_line(exc)})") from exc
    return module


def _import_module(module: str, text: str) -> Any:
    try:
        return importlib.import_module(module)
    except Exception as exc:  # ImportError, or the module's own code failing
        raise ConfigError("task", f"{text}: cannot import {module} ({_one_line(exc)})") from exc


def _checked_function(obj: Any, piece: str, where: str) -> Callable | None:
    fn = getattr(obj, piece, None)
    if fn is None:
        return None
    if not callable(fn):
        raise ConfigError("task", f"{where}: '{piece}' is a {type(fn).__name__}, not a function {_SHAPES[piece]}")
    try:
        inspect.signature(fn).bind(*([None] * _ARITY[piece]))
    except TypeError:
        raise ConfigError("task", f"{where}: '{piece}' must take {_SHAPES[piece]}") from None
    except ValueError:  # builtins without a signature: accept
        pass
    return fn


def as_task(obj: Any, where: str = "task") -> Task:
    """A :class:`Task` from ``obj``: a Task, or an object or class with ``load`` and ``model``.

    Raises
    ------
    ConfigError
        (field ``task``) naming the missing or malformed piece.
    """
    if isinstance(obj, Task):
        return obj
    if isinstance(obj, type):
        try:
            obj = obj()
        except Exception as exc:
            raise ConfigError("task", f"{where}: creating {obj.__name__}() failed ({_one_line(exc)})") from exc
    pieces = {piece: _checked_function(obj, piece, where) for piece in _ARITY}
    for required in ("load", "model"):
        if pieces[required] is None:
            raise ConfigError("task", f"{where}: no '{required}' (a task needs {_SHAPES['load']} -> Federation "
                                      f"and {_SHAPES['model']} -> torch module)")
    name = getattr(obj, "name", None)
    return Task(name=name if isinstance(name, str) else where, load=pieces["load"], model=pieces["model"],
                fit=pieces["fit"] or supervised_fit, predict=pieces["predict"] or softmax_predict,
                metrics=pieces["metrics"], loss=pieces["loss"])


def load_task(text: str) -> Task:
    """Import the task ``module:attr`` or ``path/to/file.py:attr`` (``--task``).

    A file path is recognised by ``.py`` or a path separator; it is imported once per process.

    Raises
    ------
    ConfigError
        (field ``task``) if the text is malformed, the module or file cannot be imported, it has
        no such attribute, or the attribute is not a task (the missing piece named).
    """
    target, colon, attr = str(text).strip().rpartition(":")
    if not colon or not target or not attr.isidentifier():
        raise ConfigError("task", f"{text!r}: expected module:attr or path/to/file.py:attr")
    if target.endswith(".py") or "/" in target or "\\" in target:
        module = _import_file(Path(target), text)
    else:
        module = _import_module(target, text)
    if not hasattr(module, attr):
        raise ConfigError("task", f"{text}: {target} has no attribute {attr!r}")
    return as_task(getattr(module, attr), text)


# ------------------------------------------------------------------ running a task's pieces


def build_task_model(task: Task, spec: ModelSpec) -> nn.Module:
    """Call the task's model function and check that it returned a torch module.

    Raises
    ------
    ConfigError
        (field ``task``, or the field the built-in model names) if it fails or returns
        something else.
    """
    return _call(task.name, "model(spec)", task.model, spec, nn.Module, "torch.nn.Module")


def _call(task: str, what: str, fn: Callable[[Any], Any], arg: Any, expected: type, expected_name: str) -> Any:
    """``fn(arg)``, with a foreign failure or a result of the wrong type as a ConfigError."""
    try:
        out = fn(arg)
    except SwarmError:
        raise
    except Exception as exc:
        raise ConfigError("task", f"{task}: {what} failed ({_one_line(exc)})") from exc
    if not isinstance(out, expected):
        raise ConfigError("task", f"{task}: {what} returned a {type(out).__name__}, not a {expected_name}")
    return out


def load_federation(task: Task, request: DataRequest) -> Federation:
    """Call the task's ``load`` and check what it returned.

    Raises
    ------
    ConfigError, DataError
        The loader's own errors; ``ConfigError`` (field ``task``) if it returned no
        :class:`~swarm.partition.Federation`, or ``DataError`` if a site has no training data.
    """
    federation = _call(task.name, "load(request)", task.load, request, Federation, "swarm.partition.Federation")
    if not federation.sites:
        raise DataError(f"{task.name}: the data has no sites")
    if request.n_sites is not None and len(federation.sites) != request.n_sites:
        raise DataError(f"{task.name}: asked for {request.n_sites} sites, the data has {len(federation.sites)}")
    empty = [s.name for s in federation.sites if len(s.train) == 0]
    if empty:
        raise DataError(f"{task.name}: site {empty[0]} has no training rows")
    return federation


#: training rows the dry run of ``fit`` uses (enough for batch norm in training mode)
FIT_CHECK_ROWS = 4


def check_fit(trainer: Trainer, federation: Federation, weights: Weights) -> None:
    """Run the task's ``fit`` once on a few training rows of the first site, from a copy of
    ``weights``, so a ``fit`` that fails, returns no number or changes the model's shape
    stops the run before round 0 rather than in the middle of it. The result is thrown away.

    Raises
    ------
    ConfigError
        (field ``task``) naming what went wrong.
    """
    site = federation.sites[0]
    sample = site.train.subset(slice(0, min(FIT_CHECK_ROWS, len(site.train))))
    name = trainer.task.name
    try:
        result = trainer.train(weights, sample, 0)
    except SwarmError:
        raise
    except Exception as exc:
        raise ConfigError("task", f"{name}: fit(model, data, config, seed) failed on {len(sample)} training rows "
                                  f"({_one_line(exc)})") from exc
    if not np.isfinite(result.loss):
        raise ConfigError("task", f"{name}: fit returned the loss {result.loss}, not a finite number")
    changed = [k for k, v in weights.items()
               if k not in result.weights or np.shape(result.weights[k]) != np.shape(v)]
    if changed or len(result.weights) != len(weights):
        what = changed[0] if changed else "the parameter count"
        raise ConfigError("task", f"{name}: fit changed the model's shape ({what}); it must train in place")


def check_predictions(trainer: Trainer, federation: Federation, weights: Weights) -> None:
    """Evaluate ``weights`` on two test rows, so a ``predict`` or ``metrics`` that does
    not fit the data fails before round 0.

    Raises
    ------
    ConfigError
        (field ``task``) if ``predict`` does not return ``(N, num_classes)`` probabilities or
        ``metrics`` does not return numbers by name.
    """
    site = federation.sites[0]
    sample = (site.test if len(site.test) else site.train).subset(slice(0, 2))
    name = trainer.task.name
    try:
        probs = np.asarray(trainer.predict(weights, sample))
        extra = trainer.task.metrics(sample.y, probs) if trainer.task.metrics is not None else {}
        extra = {str(k): float(v) for k, v in dict(extra).items()}
    except SwarmError:
        raise
    except Exception as exc:
        raise ConfigError("task", f"{name}: evaluating the model failed ({_one_line(exc)})") from exc
    if probs.shape != (len(sample), federation.num_classes):
        raise ConfigError("task", f"{name}: predict returned shape {probs.shape}, expected "
                                  f"({len(sample)}, {federation.num_classes})")


# ------------------------------------------------------------------ a command's setup


def resolve_task(learning: LearningConfig) -> Task:
    """The task of ``--task``, or the built-in one.

    Raises
    ------
    ConfigError
        As :func:`load_task`.
    """
    return load_task(learning.task) if learning.task is not None else builtin_task()


def natural_site_count(learning: LearningConfig) -> int | None:
    """How many sites ``--partition sites`` makes of ``--data``, without loading it: 4 for
    ``heart``, the distinct ``site`` values of a CSV; ``None`` otherwise (another partition or
    data set). With a ``--task`` this is the CSV's count too: a task reading the data otherwise
    and finding another count fails with a clear mismatch before round 0.

    Raises
    ------
    DataError
        If the CSV cannot be read.
    """
    from swarm.csv_table import site_names
    from swarm.heart import heart_sites
    from swarm.partition import parse_partition

    if parse_partition(str(learning.partition)).kind != "sites":
        return None
    if learning.data.strip().lower() == "heart":
        return len(heart_sites())
    if learning.data.lower().endswith(".csv"):
        return len(site_names(learning.data)) or None
    return None


@dataclass(frozen=True, eq=False)
class Prepared:
    """A run's task, its loaded data, the trainer built from them and the seeded initial weights."""

    task: Task
    federation: Federation
    trainer: Trainer
    initial: Weights


def prepare(learning: LearningConfig, n_sites: int | None, *, site_shift: float = 0.0) -> Prepared:
    """Resolve ``--task`` (or the built-in task), load the data, build and check the model.

    The one path every command takes (``simulate``, ``peer``, ``launch``'s peers), so any
    error in the task, the data or the model appears here, before round 0.

    Raises
    ------
    ConfigError, DataError
        As :func:`load_task`, :func:`load_federation` and :func:`build_task_model`.
    """
    task = resolve_task(learning)
    federation = load_federation(task, learning.data_request(n_sites, site_shift))
    trainer = Trainer(federation.input_shape, federation.num_classes, learning.train_config(), task=task,
                      arch=learning.model, norm=learning.norm, private=learning.privacy() is not None)
    initial = trainer.initial_weights(learning.seed)
    check_fit(trainer, federation, initial)
    check_predictions(trainer, federation, initial)
    return Prepared(task, federation, trainer, initial)
