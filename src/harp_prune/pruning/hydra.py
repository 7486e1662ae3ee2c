"""HYDRA (Sehwag et al. 2020) as the official code's ``score_prune`` ablation: learned scores, fixed rates."""

from __future__ import annotations

from dataclasses import dataclass

from harp_prune.pruning.fixed import FixedRatePruner, LayerBudgetOptions
from harp_prune.pruning.registry import register_pruner
from harp_prune.pruning.sharpness import ScoreSharpnessOptions


@dataclass(frozen=True)
class HydraOptions(ScoreSharpnessOptions, LayerBudgetOptions):
    """HYDRA's options: its layer budget, and S2AP."""

    def __post_init__(self) -> None:
        LayerBudgetOptions.__post_init__(self)
        ScoreSharpnessOptions.__post_init__(self)


@register_pruner
class HydraPruner(FixedRatePruner):
    """HYDRA: scores trained under the adversarial loss, each layer's keep-ratio fixed to a layer budget.

    Scores start at HARP's scaled weight magnitude and are trained with the same STE; every layer's
    keep-ratio is fixed to the layer budget at the target density (uniform by default, as in HYDRA;
    ``lamp``/``erk`` give the authors' non-uniform HYDRA variants).
    """

    name = "hydra"
    Options = HydraOptions
    learns_scores = True
    importance = "scaled-magnitude"

    @property  # type: ignore[override]
    def layer_budget(self) -> str:
        return self.options.layer_budget
