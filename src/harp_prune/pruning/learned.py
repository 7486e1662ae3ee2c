"""What HARP and its structured variant share: rates learned under a size loss whose weight γ follows the
step-wise schedule, starting from an initial layer budget (docs/method.md, "Size loss and the γ schedule")."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

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

    gamma0: float = option(0.01, "first weight γ of the size loss and its per-epoch increment until the budget is "
                                 "met (the paper's 0.01 suits ~390 steps per epoch; the embedded data: 0.05)")
    alpha: float = option(0.1, "a_min = alpha × (1 − sparsity), the floor of every layer's keep-ratio")
    init_strategy: str = option("uniform", "the keep-ratios the rates start from: a layer budget (uniform, lamp, "
                                           "erk, global-magnitude, ...) or comma-separated keep-ratios, one per "
                                           "prunable layer")
    init_density: float = option(0.1, "the density the initial strategy is evaluated at (the official code starts "
                                      "every target from 10% kept)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if number("gamma0", self.gamma0) < 0:
            raise HarpError(f"gamma0 must be >= 0 (the size loss's weight grows by gamma0 per epoch), "
                            f"got {self.gamma0}")
        if not 0.0 <= number("alpha", self.alpha) < 1.0:
            raise HarpError(f"alpha (a_min / target density) must be in [0, 1), got {self.alpha}")
        parse_strategy(self.init_strategy, "init_strategy")
        if not 0.0 < number("init_density", self.init_density) <= 1.0:
            raise HarpError(f"init_density must be in (0, 1], got {self.init_density}")


class LearnedRatePruner(Pruner):
    """Scores and rates trained by the STE under γ_e · L_hw; the budget projection fixes the final rates.
    Subclasses say how the masks start (``initialize``) and, for other size measures, override ``size_loss``
    and ``soft_size``. Their options extend ``LearnedRateOptions``."""

    learns_scores = True
    learns_rates = True

    def __init__(self, sparsity: float, options: Any = None, **kwargs: Any) -> None:
        super().__init__(sparsity, options, **kwargs)
        self.alpha = float(self.options.alpha)
        self.min_keep = self.alpha * self.target_density
        self.schedule = GammaSchedule(float(self.options.gamma0))

    def initial_densities(self, layers: list[WeightMask]) -> list[float]:
        """The initial strategy's keep-ratios at ``init_density``."""
        return layer_densities(self.options.init_strategy, layers, self.options.init_density)

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
