"""What every HARP shares: per-layer rates learned under a size loss, starting from an initial layer budget.

``LearnedRatePruner`` is the common ground of ``harp`` (log keep-ratios stepped by the pruner along a budget
trajectory) and of the paper's mechanics (``RampedGammaPruner``: the optimiser steps the rates, γ follows
the step-wise schedule; ``harp-paper``, ``harp-channel``, ``rates-only``); docs/method.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from harp_prune.errors import HarpError
from harp_prune.pruning.base import Pruner
from harp_prune.pruning.schedule import GammaSchedule
from harp_prune.pruning.sharpness import ScoreSharpnessOptions
from harp_prune.pruning.sparsity import size_loss, soft_density
from harp_prune.pruning.strategies import layer_densities, parse_strategy
from harp_prune.pruning.weight_mask import WeightMask
from harp_prune.registry import number, option


@dataclass(frozen=True)
class LearnedRateOptions(ScoreSharpnessOptions):
    """Options of every method that learns its per-layer rates under the size loss."""

    alpha: float = option(0.1, "a_min = alpha × (1 − sparsity), the floor of every layer's keep-ratio")
    init_strategy: str = option("uniform", "the keep-ratios the rates start from: a layer budget (uniform, lamp, "
                                           "erk, global-magnitude, ...) or comma-separated keep-ratios, one per "
                                           "prunable layer")
    init_density: float = option(0.1, "the density the initial strategy is evaluated at (the official code starts "
                                      "every target from 10% kept)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= number("alpha", self.alpha) < 1.0:
            raise HarpError(f"alpha (a_min / target density) must be in [0, 1), got {self.alpha}")
        parse_strategy(self.init_strategy, "init_strategy")
        if not 0.0 < number("init_density", self.init_density) <= 1.0:
            raise HarpError(f"init_density must be in (0, 1], got {self.init_density}")


class LearnedRatePruner(Pruner):
    """Scores and per-layer rates learned under a size loss; the budget projection fixes the final rates.
    Subclasses say how the masks start (``initialize``) and how the rates move. Their options extend
    ``LearnedRateOptions``."""

    learns_scores = True
    learns_rates = True

    def __init__(self, sparsity: float, options: Any = None, **kwargs: Any) -> None:
        super().__init__(sparsity, options, **kwargs)
        self.alpha = float(self.options.alpha)
        self.min_keep = self.alpha * self.target_density

    def initial_densities(self, layers: list[WeightMask]) -> list[float]:
        """The initial strategy's keep-ratios at ``init_density``."""
        return layer_densities(self.options.init_strategy, layers, self.options.init_density)

    def size_loss(self) -> torch.Tensor:
        self._require_attached("the size loss")
        return size_loss(self.layers, self.target_density)

    def soft_size(self) -> torch.Tensor:
        """The differentiable kept fraction the size loss compares with the target."""
        return soft_density(self.layers)


@dataclass(frozen=True)
class LayerBoundsOptions(LearnedRateOptions):
    """Per-layer keep-ratio bounds and the rate-gradient estimator, shared by ``harp`` and ``harp-paper``."""

    min_layer_density: float = option(0.0, "a floor on every layer's keep-ratio (raised to a_min if lower)")
    max_layer_density: float = option(1.0, "a ceiling on every layer's keep-ratio")
    rate_boundary_width: float = option(0.0, "0: the paper's rate gradient (the sum of all a layer's mask "
                                             "gradients); f > 0: N × their mean over the layer's boundary, the "
                                             "ceil(f × kept) last kept and next pruned weights (a harp-prune "
                                             "extension)", renamed_from=("rate_frontier",))

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= number("rate_boundary_width", self.rate_boundary_width) <= 1.0:
            raise HarpError(f"rate_boundary_width must lie in [0, 1] (0: the paper's rate gradient), "
                            f"got {self.rate_boundary_width}")
        low = number("min_layer_density", self.min_layer_density)
        high = number("max_layer_density", self.max_layer_density)
        if not 0.0 <= low < high <= 1.0:
            raise HarpError(f"per-layer keep-ratio bounds must satisfy 0 <= min_layer_density < max_layer_density "
                            f"<= 1, got [{low}, {high}]; widen prune.min_layer_density/prune.max_layer_density")


class BoundedRatePruner(LearnedRatePruner):
    """Per-layer bounds [max(a_min, min_layer_density), max_layer_density] on the keep-ratio, checked against
    the target, and the rate-gradient estimator (``rate_boundary_width``) given to every layer. Options extend
    ``LayerBoundsOptions``; ``initialize`` calls ``set_bounds`` first."""

    def __init__(self, sparsity: float, options: Any = None, **kwargs: Any) -> None:
        super().__init__(sparsity, options, **kwargs)
        low, high = max(self.min_keep, self.options.min_layer_density), float(self.options.max_layer_density)
        if not low < high:
            raise HarpError(f"a_min = {low:g} (alpha × target density) is not below max_layer_density {high:g}; "
                            "lower prune.alpha or raise prune.max_layer_density")
        if not low <= self.target_density <= high:
            raise HarpError(
                f"the target density {self.target_density:g} lies outside the per-layer bounds [{low:g}, {high:g}], "
                "so no layer budget can meet it; widen prune.min_layer_density/prune.max_layer_density"
            )
        self.min_layer_density, self.max_layer_density = low, high
        self.rate_frontier = float(self.options.rate_boundary_width)

    def set_bounds(self, layers: list[WeightMask]) -> None:
        for layer in layers:
            layer.min_keep, layer.max_keep = self.min_layer_density, self.max_layer_density
        self._set_rate_frontier(layers)

    def adopt(self, model: nn.Module) -> None:
        super().adopt(model)
        self._set_rate_frontier(self.layers)

    def _set_rate_frontier(self, layers: list[WeightMask]) -> None:
        for layer in layers:
            layer.rate_frontier = self.rate_frontier


@dataclass(frozen=True)
class RampedGammaOptions(LearnedRateOptions):
    """Options of the methods whose size-loss weight follows the paper's step-wise γ schedule."""

    gamma0: float = option(0.01, "first weight γ of the size loss and its per-epoch increment until the budget is "
                                 "met (the paper's 0.01 suits ~390 steps per epoch; the embedded data: 0.05)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if number("gamma0", self.gamma0) < 0:
            raise HarpError(f"gamma0 must be >= 0 (the size loss's weight grows by gamma0 per epoch), "
                            f"got {self.gamma0}")


class RampedGammaPruner(LearnedRatePruner):
    """The paper's mechanics: the optimiser steps scores and rates under L_adv + γ_e · L_hw, with
    γ_e = (e + 1) γ0 until the budget is first met at the end of an epoch, then frozen. Options extend
    ``RampedGammaOptions``."""

    rates_by_optimizer = True

    def __init__(self, sparsity: float, options: Any = None, **kwargs: Any) -> None:
        super().__init__(sparsity, options, **kwargs)
        self.schedule = GammaSchedule(float(self.options.gamma0))

    def gamma_for(self, epoch: int) -> float:
        return self.schedule.gamma(epoch)

    def penalty(self, epoch: int) -> torch.Tensor:
        return self.schedule.gamma(epoch) * self.size_loss()

    def end_epoch(self, epoch: int) -> dict[str, float]:
        with torch.no_grad():
            loss = float(self.size_loss())
            soft = float(self.soft_size())
        gamma = self.schedule.gamma(epoch)
        self.schedule.end_epoch(epoch, loss)
        return {"gamma": gamma, "size_loss": loss, "soft_density": soft, "budget_reached": float(self.ready)}

    @property
    def ready(self) -> bool:
        return self.schedule.reached

    def state_dict(self) -> dict:
        return {"schedule": self.schedule.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.schedule.load_state_dict(state["schedule"])
