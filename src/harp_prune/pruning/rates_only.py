"""The ``rate_prune`` ablation: HARP's learned layer budgets with scores fixed to the weight magnitude."""

from __future__ import annotations

from harp_prune.pruning.harp_paper import HarpPaperPruner
from harp_prune.pruning.registry import register_pruner


@register_pruner
class RatesOnlyPruner(HarpPaperPruner):
    """Rates only: the paper's HARP (``harp-paper``) with the scores frozen at the scaled weight magnitude; only
    the layer budgets are learned.

    Everything as in ``harp-paper`` (initial strategy, size loss, γ schedule, budget projection) except that within a
    layer the largest |W| are kept. Isolates what learning the rates is worth.
    """

    name = "rates-only"
    learns_scores = False
