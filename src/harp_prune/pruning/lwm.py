"""LWM: least weight magnitude, layer by layer, with the same fraction kept in every layer."""

from __future__ import annotations

from harp_prune.pruning.fixed import FixedRatePruner, magnitude_scores
from harp_prune.pruning.masked import Prunable, WeightMask


class LwmPruner(FixedRatePruner):
    """One-shot: each layer keeps its largest |W|, the per-layer fraction given by ``default_budget``
    (uniform here; the LAMP and ERK baselines subclass this with their own budgets). Nothing is trained in
    the pruning stage; the fine-tuning stage then adapts the kept weights.
    """

    name = "lwm"

    def __init__(self, sparsity: float, *, prunable: Prunable | dict | None = None) -> None:
        super().__init__(sparsity, prunable=prunable)

    def init_scores(self, layers: list[WeightMask]) -> None:
        magnitude_scores(layers)
