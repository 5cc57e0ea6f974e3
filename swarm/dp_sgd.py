"""One DP-SGD round with Opacus, and making a task's model fit for it.

``swarm.privacy`` plans the noise and keeps the ledger; this module only trains: Poisson
sampling from a given (secret) generator, per-record gradients (Opacus ``GradSampleModule``),
clipping and noise (Opacus ``DPOptimizer``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from swarm.errors import ConfigError

if TYPE_CHECKING:
    from swarm.datasets import ArrayDataset
    from swarm.privacy import DPPlan
    from swarm.training import TrainConfig

#: ``loss(model, x, y) -> mean loss of the batch``: what DP-SGD minimises
LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


def private_model(model: nn.Module, where: str) -> nn.Module:
    """``model`` with batch norms replaced by group norms, checked by Opacus.

    Raises
    ------
    ConfigError
        (field ``task``) if a layer cannot be trained privately, naming the first reason.
    """
    from opacus.validators import ModuleValidator

    from swarm.models import group_norm

    group_norm(model)
    errors = ModuleValidator.validate(model, strict=False)
    if errors:
        reason = str(errors[0]).split(". ")[0].strip().rstrip(".")
        raise ConfigError("task", f"{where}: the model cannot be trained privately ({reason})")
    return model


def cross_entropy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The default DP-SGD loss: mean cross-entropy of the model's logits."""
    return nn.functional.cross_entropy(model(x), y)


def dp_fit(module: nn.Module, params: list[nn.Parameter], data: ArrayDataset, cfg: TrainConfig,
           plan_: DPPlan, loss_fn: LossFn, gen: torch.Generator) -> float:
    """One private round of ``module`` (an Opacus ``GradSampleModule``); the mean loss.

    Each step takes a Poisson sample at ``plan_.sample_rate`` (an empty one still adds
    noise), clips every record's gradient and adds noise (Opacus ``DPOptimizer``).
    """
    from opacus.optimizers import DPOptimizer

    base: torch.optim.Optimizer = (
        torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
        if cfg.optimizer == "sgd" else torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay))
    opt = DPOptimizer(base, noise_multiplier=plan_.noise, max_grad_norm=plan_.max_grad_norm,
                      expected_batch_size=max(1, round(plan_.sample_rate * len(data))), generator=gen,
                      loss_reduction="mean")
    module.train()
    x, y = torch.from_numpy(data.x), torch.from_numpy(data.y)
    with warnings.catch_warnings():  # Opacus's hooks fire on inputs without gradients: harmless
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        return _steps(module, params, opt, x, y, plan_, loss_fn, gen)


def _steps(module: nn.Module, params: list[nn.Parameter], opt: Any, x: torch.Tensor, y: torch.Tensor,
           plan_: DPPlan, loss_fn: LossFn, gen: torch.Generator) -> float:
    total, count = 0.0, 0
    for _ in range(plan_.steps_per_round):
        idx = (torch.rand(len(x), generator=gen) < plan_.sample_rate).nonzero().squeeze(1)
        opt.zero_grad(set_to_none=True)
        if len(idx):
            loss = loss_fn(module, x[idx], y[idx])
            loss.backward()
            total += float(loss.detach()) * len(idx)
            count += len(idx)
        else:  # nothing sampled: the step is still taken, noise alone
            for p in params:
                p.grad_sample = torch.zeros((0, *p.shape))
        opt.step()
    return total / count if count else math.nan
