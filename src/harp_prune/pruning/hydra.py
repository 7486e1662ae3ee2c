"""HYDRA (Sehwag et al. 2020) as the official code's ``score_prune`` ablation: learned scores, fixed rates."""

from __future__ import annotations

from collections.abc import Sequence

from harp_prune.pruning.base import scaled_score_init
from harp_prune.pruning.fixed import FixedRatePruner
from harp_prune.pruning.masked import Prunable, WeightMask


class HydraPruner(FixedRatePruner):
    """Scores start at HARP's scaled weight magnitude and are trained with the same STE under the
    adversarial loss; every layer's keep-ratio is fixed to the layer budget at the target density
    (uniform by default, as in HYDRA; ``lamp``/``erk`` give the authors' non-uniform HYDRA variants).
    """

    name = "hydra"
    learns_scores = True

    def __init__(self, sparsity: float, *, layer_budget: str | Sequence[float] | None = None,
                 prunable: Prunable | dict | None = None) -> None:
        super().__init__(sparsity, layer_budget=layer_budget, prunable=prunable)

    def init_scores(self, layers: list[WeightMask]) -> None:
        scaled_score_init(layers)

    def describe(self) -> dict:
        budget = self.layer_budget
        return {**super().describe(), "layer_budget": budget if isinstance(budget, str) else list(budget)}
