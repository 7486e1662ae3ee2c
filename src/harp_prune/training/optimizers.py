"""The optimisers a stage trains with, by name (``pretrain.optimizer``, ``--prune-optimizer``).

SGD with momentum and weight decay is the default: the paper's recipe and the one every published figure of
this repository was made with. Adam and AdamW read the same three settings, so one config describes any of
them: ``momentum`` is their first-moment decay (beta1; torch's default 0.9 is the stage's default too) and
``weight_decay`` is added to the gradient (Adam, as SGD does) or decoupled from it (AdamW).

A new optimiser is one ``register_optimizer`` call with a factory ``(params, lr, momentum, weight_decay)``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from harp_prune.registry import Registry

OptimizerFactory = Callable[[list[nn.Parameter], float, float, float], torch.optim.Optimizer]

OPTIMIZERS: Registry[torch.optim.Optimizer] = Registry("optimizer")
"""The optimisers by name; ``build_optimizer`` makes one, the config key ``<stage>.optimizer`` chooses one."""


def register_optimizer(name: str, factory: OptimizerFactory, summary: str = "") -> None:
    """Make ``factory(params, lr, momentum, weight_decay)`` the optimiser ``name``."""
    OPTIMIZERS.register(name, factory, summary=summary)


def build_optimizer(name: str, params: list[nn.Parameter], lr: float, momentum: float,
                    weight_decay: float) -> torch.optim.Optimizer:
    """The optimiser ``name`` over ``params``; an unknown name is a HarpError listing the known ones."""
    return OPTIMIZERS.get(name).factory(params, lr, momentum, weight_decay)


register_optimizer("sgd", lambda params, lr, momentum, weight_decay: torch.optim.SGD(
    params, lr=lr, momentum=momentum, weight_decay=weight_decay), "SGD with momentum (the paper's)")
register_optimizer("adam", lambda params, lr, momentum, weight_decay: torch.optim.Adam(
    params, lr=lr, betas=(momentum, 0.999), weight_decay=weight_decay), "Adam; momentum is beta1")
register_optimizer("adamw", lambda params, lr, momentum, weight_decay: torch.optim.AdamW(
    params, lr=lr, betas=(momentum, 0.999), weight_decay=weight_decay),
    "AdamW (decoupled weight decay); momentum is beta1")
