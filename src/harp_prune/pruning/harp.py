"""HARP: learn how many weights each layer keeps (r) and which (S), under one global size budget."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from harp_prune.errors import HarpError
from harp_prune.pruning.base import set_layer_densities
from harp_prune.pruning.importance import scaled_score_init
from harp_prune.pruning.learned import LearnedRateOptions, LearnedRatePruner
from harp_prune.pruning.registry import register_pruner
from harp_prune.pruning.weight_mask import WeightMask
from harp_prune.registry import number, option


@dataclass(frozen=True)
class HarpOptions(LearnedRateOptions):
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


@register_pruner
class HarpPruner(LearnedRatePruner):
    """HARP (Zhao & Wressnegger, ICLR 2023): learned per-layer rates and scores under a size loss.

    Scores start at the scaled weight magnitude, rates at the initial strategy (uniform 10% kept by
    default, whatever the target). Each pruning step adds γ_e * L_hw to the adversarial loss, with
    γ_e = (e + 1) γ0 until the budget is first met at the end of an epoch, then frozen. Both per-layer
    bounds enter the parametrisation a = lo + (hi - lo) sigmoid(r), not a clamp, so the rate gradient of
    the STE stays exact. Options: ``HarpOptions``; the equations: docs/method.md.

    Example::

        pruner = HarpPruner(0.99, gamma0=0.05)
        pruner.attach(model)
        optimizer = torch.optim.SGD(pruner.trainable_parameters(model), lr=0.1, momentum=0.9)
    """

    name = "harp"
    Options = HarpOptions

    def __init__(self, sparsity: float, options: Any = None, **kwargs: Any) -> None:
        super().__init__(sparsity, options, **kwargs)
        self.rate_frontier = float(self.options.rate_boundary_width)
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

    def initialize(self, layers: list[WeightMask]) -> None:
        for layer in layers:
            layer.min_keep, layer.max_keep = self.min_layer_density, self.max_layer_density
        self._set_rate_frontier(layers)
        scaled_score_init(layers)
        set_layer_densities(layers, self.initial_densities(layers))

    def adopt(self, model: nn.Module) -> None:
        super().adopt(model)
        self._set_rate_frontier(self.layers)

    def _set_rate_frontier(self, layers: list[WeightMask]) -> None:
        for layer in layers:
            layer.rate_frontier = self.rate_frontier
