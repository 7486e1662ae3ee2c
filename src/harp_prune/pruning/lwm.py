"""LWM: least weight magnitude, layer by layer, with the same fraction kept in every layer."""

from __future__ import annotations

from harp_prune.pruning.fixed import FixedRatePruner
from harp_prune.pruning.registry import register_pruner


@register_pruner
class LwmPruner(FixedRatePruner):
    """LWM: one-shot magnitude pruning, every layer keeping the same fraction of its weights.

    Nothing is trained in the pruning stage; the fine-tuning stage then adapts the kept weights.
    """

    name = "lwm"
    importance = "magnitude"
    layer_budget = "uniform"
