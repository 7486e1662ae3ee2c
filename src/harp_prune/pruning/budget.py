"""Closing the gap between the soft budget and the integer top-k counts.

The size loss sees the soft keep-ratios a(l); the masks keep N - floor((1 - a) N) weights per layer, and
the selected checkpoint may sit slightly below or above the budget (γ is frozen but the hinge can let
rates drift). After pruning, every layer's logit r(l) is shifted by one common offset δ, found by
bisection, so that the integer kept count over all layers matches round(a_t * N) as closely as possible.
A common logit shift keeps the learned order of the layers' keep-ratios, and moves each layer by less
where it is near a_min or 1.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from harp_prune.pruning.masked import MaskedLayer
from harp_prune.pruning.rates import kept_count


def _kept_with_offset(layers: list[MaskedLayer], offset: float) -> int:
    total = 0
    for layer in layers:
        sig = 1.0 / (1.0 + math.exp(-(float(layer.rate.detach()) + offset)))
        total += kept_count(layer.min_keep + (layer.max_keep - layer.min_keep) * sig, layer.numel)
    return total


@torch.no_grad()
def project_to_budget(layers: list[MaskedLayer], target_density: float, iterations: int = 80) -> float:
    """Shift all rates by a common δ so the realised kept count is as close as possible to the target.

    Returns δ. The kept count is monotone in δ, so bisection finds the largest δ that keeps at most the
    target, and the neighbour just above is taken if it is closer.
    """
    target = round(target_density * sum(layer.numel for layer in layers))
    best = bisect_offset(lambda d: _kept_with_offset(layers, d), target, iterations, closest=True)
    for layer in layers:
        layer.rate.add_(best)
    return best


def bisect_offset(size: Callable[[float], float], target: float, iterations: int = 80,
                  closest: bool = True) -> float:
    """The logit offset δ in [-60, 60] whose size(δ) (monotone non-decreasing) meets ``target``.

    Returns the largest δ with size(δ) <= target, or, with ``closest``, its neighbour just above when that
    one is nearer to the target.
    """
    low, high = -60.0, 60.0
    for _ in range(iterations):
        middle = 0.5 * (low + high)
        if size(middle) <= target:
            low = middle
        else:
            high = middle
    return min((low, high), key=lambda d: abs(size(d) - target)) if closest else low
