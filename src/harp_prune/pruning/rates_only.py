"""The ``rate_prune`` ablation: HARP's learned layer budgets with scores fixed to the weight magnitude."""

from __future__ import annotations

from harp_prune.pruning.harp import HarpPruner


class RatesOnlyPruner(HarpPruner):
    """Everything as in HARP (initial strategy, size loss, γ schedule, budget projection) except that the
    scores are frozen at the scaled weight magnitude, so within a layer the largest |W| are kept and only
    how many each layer keeps is learned. Isolates what learning the rates is worth.
    """

    name = "rates-only"
    learns_scores = False
