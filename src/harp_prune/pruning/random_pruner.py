"""Random pruning: the floor every method must beat."""

from __future__ import annotations

from harp_prune.pruning.fixed import FixedRatePruner
from harp_prune.pruning.registry import register_pruner


@register_pruner
class RandomPruner(FixedRatePruner):
    """Random: one-shot, each layer keeps the same fraction of weights, chosen uniformly at random (seeded)."""

    name = "random"
    importance = "random"
    layer_budget = "uniform"
