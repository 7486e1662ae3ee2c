"""ERK layer budgets (Evci et al., ICML 2020) as a strategy, and the ERK magnitude-pruning baseline."""

from __future__ import annotations

import math

from harp_prune.errors import HarpError
from harp_prune.pruning.fixed import FixedRatePruner
from harp_prune.pruning.registry import register_pruner
from harp_prune.pruning.strategies import register_strategy
from harp_prune.pruning.weight_mask import WeightMask


def erk_densities(layers: list[WeightMask], density: float) -> list[float]:
    """Erdős–Rényi-Kernel keep-ratios: d_l = eps * sum(shape_l) / prod(shape_l), scaled to the global density.

    Layers whose ratio would exceed 1 are made dense and the remaining budget is shared by the others (the
    scale eps is solved again until no layer overflows), so the kept total equals ``density * N``.
    """
    shapes = [tuple(layer.weight.shape) for layer in layers]
    raw = [sum(shape) / math.prod(shape) for shape in shapes]
    sizes = [layer.numel for layer in layers]
    budget = density * sum(sizes)
    dense: set[int] = set()
    while True:
        sparse = [i for i in range(len(layers)) if i not in dense]
        if not sparse:
            break
        remaining = budget - sum(sizes[i] for i in dense)
        if remaining <= 0:
            raise HarpError(f"ERK cannot meet density {density}: the dense layers alone exceed it")
        eps = remaining / sum(raw[i] * sizes[i] for i in sparse)
        overflow = {i for i in sparse if eps * raw[i] >= 1.0}
        if not overflow:
            break
        dense |= overflow
    return [1.0 if i in dense else eps * raw[i] for i in range(len(layers))]


register_strategy("erk", erk_densities)


@register_pruner
class ErkPruner(FixedRatePruner):
    """ERK: one-shot magnitude pruning within each layer, with ERK's per-layer budgets at the target density."""

    name = "erk"
    importance = "magnitude"
    layer_budget = "erk"
