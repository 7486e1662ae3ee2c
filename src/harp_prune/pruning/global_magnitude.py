"""Global magnitude pruning: one |W| threshold across all layers, as a layer budget and as a baseline."""

from __future__ import annotations

import torch

from harp_prune.pruning.fixed import FixedRatePruner, global_count
from harp_prune.pruning.registry import register_pruner
from harp_prune.pruning.strategies import register_strategy
from harp_prune.pruning.weight_mask import WeightMask


@torch.no_grad()
def global_magnitude_densities(layers: list[WeightMask], density: float) -> list[float]:
    """The keep-ratios one |W| threshold over all layers gives at the global ``density`` (at least one weight each).

    Weights of different layers are compared as they are (no normalisation), which is what makes it prune
    wide layers hardest.
    """
    magnitudes = torch.cat([layer.weight.detach().abs().flatten().float() for layer in layers])
    owner = torch.cat([torch.full((layer.numel,), i, dtype=torch.long) for i, layer in enumerate(layers)])
    kept = torch.topk(magnitudes, global_count(layers, density), sorted=False).indices
    counts = torch.bincount(owner[kept], minlength=len(layers))
    return [max(1, int(count)) / layer.numel for count, layer in zip(counts, layers, strict=True)]


register_strategy("global-magnitude", global_magnitude_densities)


@register_pruner
class GlobalMagnitudePruner(FixedRatePruner):
    """Global magnitude: one-shot, keeping the ``round(a_t * N)`` largest |W| of the network, wherever they are."""

    name = "global-magnitude"
    importance = "magnitude"
    layer_budget = "global-magnitude"
