"""The interface every pruning method implements; a new method is one subclass in one file.

A pruner wraps a model's Conv2d/Linear layers (``attach``), says which parameters the pruning stage
trains, may add a penalty to the loss, hears about the end of each epoch, and fixes the masks at the end
(``finalize``). The training loop knows nothing else about it.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from harp_prune.errors import HarpError
from harp_prune.pruning.budget import project_to_budget
from harp_prune.pruning.masked import MaskedLayer, fan_in, masked_layers, wrap_model
from harp_prune.pruning.rates import check_density, rate_for_keep_ratio
from harp_prune.pruning.sparsity import SparsityReport, sparsity_report
from harp_prune.pruning.strategies import layer_densities


class Pruner(ABC):
    """Base class of pruning methods.

    :param sparsity: the global fraction of conv/linear weights to remove, e.g. 0.99.
    :param alpha: a_min = alpha * (1 - sparsity), the floor of every layer's keep-ratio.
    :param init_strategy: per-layer keep-ratios to start from: a strategy name or one value per layer.
    :param init_density: the density the named initial strategy is evaluated at.
    """

    name: ClassVar[str]
    learns_scores: ClassVar[bool] = False
    learns_rates: ClassVar[bool] = False
    layer_type: ClassVar[type[MaskedLayer]] = MaskedLayer

    def __init__(self, sparsity: float, *, alpha: float = 0.1, init_strategy: str | Sequence[float] = "uniform",
                 init_density: float = 0.1) -> None:
        if not 0.0 <= sparsity < 1.0:
            raise HarpError(f"sparsity must be in [0, 1) (0.99 keeps 1% of the weights), got {sparsity}")
        if not 0.0 <= alpha < 1.0:
            raise HarpError(f"alpha (a_min / target density) must be in [0, 1), got {alpha}")
        self.sparsity = float(sparsity)
        self.target_density = check_density(1.0 - sparsity)
        self.alpha = float(alpha)
        self.min_keep = alpha * self.target_density
        self.init_strategy = init_strategy
        self.init_density = check_density(init_density, "init_density")
        self.layers: list[MaskedLayer] = []

    @property
    def needs_training(self) -> bool:
        """Whether the pruning stage has anything to learn (one-shot methods have not)."""
        return self.learns_scores or self.learns_rates

    def attach(self, model: nn.Module) -> dict[str, MaskedLayer]:
        """Wrap ``model``'s Conv2d/Linear layers in place and initialise scores and rates."""
        layers = wrap_model(model, self.min_keep, layer_type=self.layer_type)
        if not layers:
            raise HarpError("the model has no Conv2d or Linear layer to prune")
        for layer in layers.values():
            layer.min_keep = self.min_keep
        self.layers = list(layers.values())
        self.initialize(self.layers)
        self._set_requires_grad()
        return layers

    def adopt(self, model: nn.Module) -> None:
        """Use the already wrapped layers of ``model`` (after loading a checkpoint) without re-initialising."""
        self.layers = list(masked_layers(model).values())
        if not self.layers:
            raise HarpError("the model has no masked layers; attach a pruner before loading pruning state")
        self._set_requires_grad()

    @abstractmethod
    def initialize(self, layers: list[MaskedLayer]) -> None:
        """Set the initial scores and rates of freshly wrapped layers."""

    def _set_requires_grad(self) -> None:
        for layer in self.layers:
            layer.scores.requires_grad_(self.learns_scores)
            layer.rate.requires_grad_(self.learns_rates)

    def trainable_parameters(self, model: nn.Module) -> list[nn.Parameter]:
        """What the pruning stage optimises: scores and/or rates, plus every parameter that is neither a
        conv/linear weight or bias (BatchNorm affine, as the official code does). Weights stay frozen."""
        frozen = set()
        for layer in self.layers:
            frozen.add(id(layer.layer.weight))
            if layer.layer.bias is not None:
                frozen.add(id(layer.layer.bias))
            if not self.learns_scores:
                frozen.add(id(layer.scores))
            if not self.learns_rates:
                frozen.add(id(layer.rate))
        params = []
        for param in model.parameters():
            trainable = id(param) not in frozen
            param.requires_grad_(trainable)
            if trainable:
                params.append(param)
        return params

    def gamma_for(self, epoch: int) -> float:
        """The weight of the penalty in ``epoch`` (0 for methods without one)."""
        return 0.0

    def penalty(self, epoch: int) -> torch.Tensor | None:
        """A term added to the adversarial loss in every pruning step (None for none)."""
        return None

    def end_epoch(self, epoch: int) -> dict[str, float]:
        """Called after each pruning epoch; returns figures to log."""
        return {}

    @property
    def ready(self) -> bool:
        """Whether checkpoints of the current epoch may be selected as the best (HARP: budget reached)."""
        return True

    def finalize(self) -> float:
        """Fix the layer budgets so the realised global density meets the target; returns the logit shift."""
        return project_to_budget(self.layers, self.target_density)

    def report(self, model: nn.Module) -> SparsityReport:
        return sparsity_report(model)

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:  # noqa: B027 - stateless pruners need no override
        """Restore what ``state_dict`` saved (for ``--resume``)."""

    def describe(self) -> dict:
        """What a checkpoint records to rebuild this pruner."""
        return {
            "method": self.name, "sparsity": self.sparsity, "alpha": self.alpha,
            "init_strategy": self.init_strategy if isinstance(self.init_strategy, str) else list(self.init_strategy),
            "init_density": self.init_density,
        }

    def budget_report(self) -> dict[str, Any]:
        """What the sparsity target constrains and how the masks meet it, as fractions of the dense model.

        ``quantity`` names it ('weights' here; structured pruners: 'flops' or 'params'), ``target`` is its
        allowed kept fraction and ``realised`` the kept fraction of the current masks; ``weights`` is the
        kept fraction of conv/linear weights whatever the quantity, so every report can show both.
        """
        density = sum(layer.kept() for layer in self.layers) / sum(layer.numel for layer in self.layers)
        return {"quantity": "weights", "sparsity_of": "weights", "target": self.target_density, "realised": density,
                "weights": density}


@torch.no_grad()
def scaled_score_init(layers: list[MaskedLayer]) -> None:
    """S = sqrt(6 / fan_in) * W / max|W| (HYDRA's scaled init): the initial ranking is weight magnitude."""
    for layer in layers:
        weight = layer.weight.detach()
        peak = weight.abs().max().clamp_min(1e-12)
        layer.scores.copy_(math.sqrt(6.0 / fan_in(weight)) * weight / peak)


@torch.no_grad()
def set_layer_densities(layers: list[MaskedLayer], densities: Sequence[float]) -> None:
    """Set each layer's rate logit so that its keep-ratio equals the given density."""
    for layer, density in zip(layers, densities, strict=True):
        layer.rate.fill_(rate_for_keep_ratio(density, layer.min_keep, layer.max_keep))


def initial_densities(pruner: Pruner, layers: list[MaskedLayer]) -> list[float]:
    return layer_densities(pruner.init_strategy, layers, pruner.init_density)
