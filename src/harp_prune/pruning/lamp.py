"""LAMP layer budgets (Lee et al., ICLR 2021) as a strategy, and the LAMP magnitude-pruning baseline."""

from __future__ import annotations

import torch

from harp_prune.pruning.fixed import FixedRatePruner, global_top_k_densities
from harp_prune.pruning.registry import register_pruner
from harp_prune.pruning.strategies import register_strategy
from harp_prune.pruning.weight_mask import WeightMask


@torch.no_grad()
def lamp_densities(layers: list[WeightMask], density: float) -> list[float]:
    """Per-layer keep-ratios of global pruning on LAMP scores at the global ``density``.

    A weight's LAMP score is w_u^2 / sum_{v >= u} w_v^2 over the layer's weights sorted by ascending
    magnitude: a layer's largest weight scores 1, so every layer keeps at least one weight, and layers
    whose magnitude is spread over few weights keep relatively more than under a raw global threshold.
    """
    scores = []
    for layer in layers:
        squared, _ = torch.sort(layer.weight.detach().flatten().double() ** 2)
        tail = torch.flip(torch.cumsum(torch.flip(squared, [0]), 0), [0])
        scores.append(squared / tail.clamp_min(1e-300))
    return global_top_k_densities(layers, scores, density)


register_strategy("lamp", lamp_densities)


@register_pruner
class LampPruner(FixedRatePruner):
    """LAMP: one-shot magnitude pruning within each layer, with LAMP's per-layer budgets at the target density."""

    name = "lamp"
    importance = "magnitude"
    layer_budget = "lamp"
