"""HARP: learn how many weights each layer keeps (r) and which (S), under one global size budget."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from harp_prune.errors import HarpError
from harp_prune.pruning.base import Pruner, as_number, initial_densities, scaled_score_init, set_layer_densities
from harp_prune.pruning.masked import Prunable, WeightMask
from harp_prune.pruning.schedule import GammaSchedule
from harp_prune.pruning.sparsity import size_loss, soft_density


class HarpPruner(Pruner):
    """Holistic Adversarially Robust Pruning (Zhao & Wressnegger, ICLR 2023); docs/method.md.

    Scores start at the scaled weight magnitude, rates at the initial strategy (uniform 10% kept by
    default, whatever the target). Each pruning step adds γ_e * L_hw to the adversarial loss, with
    γ_e = (e + 1) γ0 until the budget is first met at the end of an epoch, then frozen.

    :param gamma0: the first γ and the per-epoch increment (0.01 for CIFAR-10/SVHN in the paper).
    :param min_layer_density: a floor on every layer's keep-ratio (raised to a_min if lower).
    :param max_layer_density: a ceiling on every layer's keep-ratio. Both bounds enter the parametrisation
        a = lo + (hi - lo) sigmoid(r), not a clamp, so the rate gradient of the STE stays exact.
    :param rate_frontier: 0 (the paper): a layer's rate gradient is the sum of all its mask gradients. f > 0
        (a harp-prune extension): N times their mean over the ceil(f * kept) last kept and next pruned
        weights, the marginal value of the weights the layer would gain or lose (``WeightMask.rate_frontier``).
    """

    name = "harp"
    learns_scores = True
    learns_rates = True

    def __init__(self, sparsity: float, *, gamma0: float = 0.01, alpha: float = 0.1,
                 init_strategy: str | Sequence[float] = "uniform", init_density: float = 0.1,
                 min_layer_density: float = 0.0, max_layer_density: float = 1.0, rate_frontier: float = 0.0,
                 prunable: Prunable | dict | None = None) -> None:
        super().__init__(sparsity, alpha=alpha, init_strategy=init_strategy, init_density=init_density,
                         prunable=prunable)
        gamma0, rate_frontier = as_number("gamma0", gamma0), as_number("rate_frontier", rate_frontier)
        if gamma0 < 0:
            raise HarpError(f"gamma0 must be >= 0 (the size loss's weight grows by gamma0 per epoch), got {gamma0}")
        if not 0.0 <= rate_frontier <= 1.0:
            raise HarpError(f"rate_frontier must lie in [0, 1] (0: the paper's rate gradient), got {rate_frontier}")
        self.rate_frontier = float(rate_frontier)
        self.schedule = GammaSchedule(gamma0)
        low = max(self.min_keep, as_number("min_layer_density", min_layer_density))
        high = as_number("max_layer_density", max_layer_density)
        if not 0.0 <= low < high <= 1.0:
            raise HarpError(
                f"per-layer keep-ratio bounds must satisfy a_min <= min_layer_density < max_layer_density <= 1, "
                f"got [{low}, {high}]; widen prune.min_layer_density/prune.max_layer_density"
            )
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
        set_layer_densities(layers, initial_densities(self, layers))

    def adopt(self, model: nn.Module) -> None:
        super().adopt(model)
        self._set_rate_frontier(self.layers)

    def _set_rate_frontier(self, layers: list[WeightMask]) -> None:
        for layer in layers:
            layer.rate_frontier = self.rate_frontier

    def size_loss(self) -> torch.Tensor:
        self._require_attached("the size loss")
        return size_loss(self.layers, self.target_density)

    def soft_size(self) -> torch.Tensor:
        """The differentiable kept fraction the size loss compares with the target."""
        return soft_density(self.layers)

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

    def describe(self) -> dict:
        return {**super().describe(), "gamma0": self.schedule.gamma0, "min_layer_density": self.min_layer_density,
                "max_layer_density": self.max_layer_density, "rate_frontier": self.rate_frontier}
