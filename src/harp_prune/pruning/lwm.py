"""LWM: least weight magnitude, layer by layer, with the same fraction kept in every layer."""

from __future__ import annotations

from harp_prune.pruning.fixed import FixedRatePruner, magnitude_scores
from harp_prune.pruning.masked import MaskedLayer


class LwmPruner(FixedRatePruner):
    """One-shot: each layer keeps its largest |W|, the per-layer fraction given by ``default_budget``
    (uniform here; the LAMP and ERK baselines subclass this with their own budgets). Nothing is trained in
    the pruning stage; the fine-tuning stage then adapts the kept weights.
    """

    name = "lwm"

    def __init__(self, sparsity: float) -> None:
        super().__init__(sparsity)

    def init_scores(self, layers: list[MaskedLayer]) -> None:
        magnitude_scores(layers)
