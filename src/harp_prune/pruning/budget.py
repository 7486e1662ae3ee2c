"""Closing the gap between the soft budget and the integer top-k counts.

The size loss sees the soft keep-ratios a(l); the masks keep N - floor((1 - a) N) weights per layer, and
the selected checkpoint may sit slightly below or above the budget (γ is frozen but the hinge can let
rates drift). After pruning, every layer's logit r(l) is shifted by one common offset δ, found by
bisection, so that the integer kept count over all layers matches round(a_t * N) as closely as possible.
A common logit shift keeps the learned order of the layers' keep-ratios, and moves each layer by less
where it is near a_min or 1.

The kept count at a shift is evaluated exactly as the masks will compute it after ``rate.add_(δ)`` (the
float32 rate plus δ, through the same keep-ratio function), the bracket of δ grows until it holds the
target (learned logits can run past any fixed range), and the realised count is checked afterwards: the
budget is met within ``BUDGET_TOLERANCE`` or a HarpError says why.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from harp_prune.errors import HarpError
from harp_prune.pruning.rates import keep_ratio
from harp_prune.pruning.weight_mask import WeightMask

# The realised kept count may differ from round(a_t * N) by at most this fraction of it (or one weight).
BUDGET_TOLERANCE = 0.005
# Far enough for any float32 logit: sigmoid saturates to exactly 0 or 1 well before.
MAX_OFFSET = 1e4


def kept_at_offset(layers: list[WeightMask], offset: float, rates: list[torch.Tensor] | None = None) -> int:
    """The total kept count the masks would have after ``rate.add_(offset)`` on every layer.

    ``rates`` are the layers' rates read beforehand (a host copy), else each layer's own is read.
    """
    total = 0
    for layer, rate in zip(layers, rates or [layer.rate.detach() for layer in layers], strict=True):
        shifted = rate + offset  # the same float32 arithmetic as rate.add_(offset)
        total += layer.kept_at(float(keep_ratio(shifted, layer.min_keep, layer.max_keep)))
    return total


def masks_kept(layers: list[WeightMask]) -> int:
    """``sum(layer.kept() for layer in layers)`` with one read of the keep-ratios from their device."""
    ratios = torch.stack([layer.keep_ratio().detach() for layer in layers]).cpu().tolist()
    return sum(layer.kept_at(ratio) for ratio, layer in zip(ratios, layers, strict=True))


def budget_slack(target: int) -> int:
    """How far the realised kept count may lie from ``target``."""
    return max(1, int(BUDGET_TOLERANCE * target))


@torch.no_grad()
def project_to_budget(layers: list[WeightMask], target_density: float, iterations: int = 100,
                      on_host: bool | None = None) -> float:
    """Shift all rates by a common δ so the realised kept count is as close as possible to the target.

    Returns δ. The kept count is monotone in δ, so bisection finds the largest δ that keeps at most the
    target, and the neighbour just above is taken if it is closer. Raises HarpError when no common shift
    meets the budget within ``BUDGET_TOLERANCE`` (e.g. the layers' floors a_min alone keep more).
    ``on_host`` bisects on a host copy of the rates (default: when they are on another device); on the
    CPU both ways compute the same float32 numbers.
    """
    if not layers:
        raise HarpError("no masked layers to project onto the budget; call pruner.attach(model) first")
    target = round(target_density * sum(layer.numel for layer in layers))
    if on_host is None:
        on_host = any(layer.rate.device.type != "cpu" for layer in layers)
    if on_host:
        # a bisection evaluates the count some 60 times; on a GPU each evaluation reads every layer's
        # keep-ratio back to the host, and with several processes sharing the device each read waits for
        # their queues too. One read of the rates, the bisection on the host, then the masks' own count.
        before = [layer.rate.detach().clone() for layer in layers]
        host_rates = list(torch.stack(before).cpu().unbind())
        best = bisect_offset(lambda d: kept_at_offset(layers, d, host_rates), target, iterations, closest=True)
        for layer in layers:
            layer.rate.add_(best)
        if abs(masks_kept(layers) - target) <= budget_slack(target):
            return best
        # the host's float32 sigmoid and the device's can differ in the last bit, moving a layer across a
        # rounding boundary: undo, and bisect on the device as the masks count
        for layer, rate in zip(layers, before, strict=True):
            layer.rate.copy_(rate)
    best = bisect_offset(lambda d: kept_at_offset(layers, d), target, iterations, closest=True)
    for layer in layers:
        layer.rate.add_(best)
    realised = sum(layer.kept() for layer in layers)
    if abs(realised - target) > budget_slack(target):
        floor = kept_at_offset(layers, -MAX_OFFSET)
        ceiling = kept_at_offset(layers, MAX_OFFSET)
        raise HarpError(
            f"the budget projection cannot meet the target of {target:,} kept weights: it reached {realised:,} "
            f"(the layers' bounds allow {floor:,} to {ceiling:,}); lower prune.alpha or prune.min_layer_density, "
            "or choose a reachable sparsity"
        )
    return best


def bisect_offset(size: Callable[[float], float], target: float, iterations: int = 100,
                  closest: bool = True) -> float:
    """The logit offset δ whose size(δ) (monotone non-decreasing) meets ``target``.

    The bracket starts at [-1, 1] and doubles outwards until it holds the target (up to ±MAX_OFFSET).
    Returns the largest δ found with size(δ) <= target, or, with ``closest``, its neighbour just above when
    that one is nearer to the target. When even -MAX_OFFSET is over the target, returns -MAX_OFFSET (the
    caller checks the realised size).
    """
    low, high = -1.0, 1.0
    while size(low) > target and low > -MAX_OFFSET:
        low, high = max(2.0 * low, -MAX_OFFSET), low
    while size(high) <= target and high < MAX_OFFSET:
        low, high = high, min(2.0 * high, MAX_OFFSET)
    if size(low) > target:
        return low
    for _ in range(iterations):
        middle = 0.5 * (low + high)
        if middle in (low, high):
            break
        if size(middle) <= target:
            low = middle
        else:
            high = middle
    return min((low, high), key=lambda d: abs(size(d) - target)) if closest else low
