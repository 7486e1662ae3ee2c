"""Global magnitude pruning: one |W| threshold across all layers, as a layer budget and as a baseline."""

from __future__ import annotations

import torch

from harp_prune.pruning.fixed import FixedRatePruner, global_top_k_densities
from harp_prune.pruning.registry import register_pruner
from harp_prune.pruning.strategies import register_strategy
from harp_prune.pruning.weight_mask import WeightMask


@torch.no_grad()
def global_magnitude_densities(layers: list[WeightMask], density: float) -> list[float]:
    """The keep-ratios one |W| threshold over all layers gives at the global ``density`` (at least one weight each).

    Weights of different layers are compared as they are (no normalisation), which is what makes it prune
    wide layers hardest.
    """
    return global_top_k_densities(layers, [layer.weight.detach().abs().float() for layer in layers], density)


register_strategy("global-magnitude", global_magnitude_densities)


@register_pruner
class GlobalMagnitudePruner(FixedRatePruner):
    """Global magnitude: one-shot, keeping the ``round(a_t * N)`` largest |W| of the network, wherever they are."""

    name = "global-magnitude"
    importance = "magnitude"
    layer_budget = "global-magnitude"
