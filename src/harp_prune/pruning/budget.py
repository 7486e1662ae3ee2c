"""Closing the gap between the learned keep-ratios and the budget's integer count.

The size loss sees the soft keep-ratios a(l); the masks keep N - floor((1 - a) N) weights per layer, and
the selected checkpoint may sit slightly below or far above the budget. Two projections:

- ``project_to_budget``: every rate is shifted by one common offset δ, found by bisection, so that the
  integer kept count over all layers matches round(a_t * N). Under harp's log keep-ratios this multiplies
  every keep-ratio by one factor; frontier uses it on its sigmoid rates at every step, within its bounds.
- ``project_proportionally``: every keep-ratio is multiplied by one factor (clamped into the layer's
  bounds) and each layer's count is then set exactly. It keeps the learned allocation's order and
  proportions whatever the parametrisation: a common shift of *sigmoid* logits does neither once some of
  them saturate (a layer at a = 1 has a logit far above the others, and all the cut falls on the rest).
  ``Pruner.finalize`` uses it, and leaves masks already within the tolerance alone.

Either way the kept count at a candidate is evaluated exactly as the masks will compute it, the bracket
grows until it holds the target, and the realised count is checked afterwards: the budget is met within
``BUDGET_TOLERANCE`` or a HarpError says why. Every layer keeps at least one weight (the kept count
N - floor((1 - a) N) of a positive a).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from harp_prune.errors import HarpError
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
        total += layer.kept_at(float(layer.ratio_at(shifted)))
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
        raise _unreachable(target, realised, kept_at_offset(layers, -MAX_OFFSET), kept_at_offset(layers, MAX_OFFSET))
    return best


def _unreachable(target: int, realised: int, floor: int, ceiling: int) -> HarpError:
    return HarpError(
        f"the budget projection cannot meet the target of {target:,} kept weights: it reached {realised:,} "
        f"(the layers' bounds allow {floor:,} to {ceiling:,}); lower prune.alpha or prune.min_layer_density, "
        "or choose a reachable sparsity"
    )


def scaled_counts(layers: list[WeightMask], ratios: Sequence[float], log_factor: float) -> list[int]:
    """Each layer's kept count at keep-ratio ratio · e^log_factor, clamped into the layer's bounds."""
    factor = math.exp(log_factor)
    return [layer.kept_at(min(max(ratio * factor, layer.min_keep), layer.max_keep))
            for layer, ratio in zip(layers, ratios, strict=True)]


@torch.no_grad()
def project_proportionally(layers: list[WeightMask], target_density: float, iterations: int = 100) -> float:
    """Multiply every layer's keep-ratio by one factor so the kept count meets the target; returns log(factor).

    The factor is found by bisection on the exact integer counts, then each layer's count is set exactly
    (``set_layer_counts``), so the order and the proportions of the keep-ratios survive up to one weight per
    layer, except where a layer meets its floor or ceiling. A layer keeps at least one weight. Raises
    HarpError when the bounds cannot meet the target within ``BUDGET_TOLERANCE``. On log keep-ratios (harp)
    a common shift of the rates is the same projection, and keeps their exact order: that is used there.
    """
    if layers and all(layer.log_rate for layer in layers):
        return project_to_budget(layers, target_density, iterations)
    if not layers:
        raise HarpError("no masked layers to project onto the budget; call pruner.attach(model) first")
    target = round(target_density * sum(layer.numel for layer in layers))
    ratios = torch.stack([layer.keep_ratio().detach().float() for layer in layers]).cpu().tolist()
    best = bisect_offset(lambda c: sum(scaled_counts(layers, ratios, c)), target, iterations, closest=True)
    counts = scaled_counts(layers, ratios, best)
    realised = sum(counts)
    if abs(realised - target) > budget_slack(target):
        raise _unreachable(target, realised, sum(scaled_counts(layers, ratios, -MAX_OFFSET)),
                           sum(scaled_counts(layers, ratios, MAX_OFFSET)))
    set_layer_counts(layers, counts)
    return best


@torch.no_grad()
def set_layer_counts(layers: list[WeightMask], counts: Sequence[int]) -> None:
    """Set each layer's rate so that its mask keeps exactly ``counts[l]`` weights.

    The keep-ratio is aimed at the middle of the interval of ratios that give that integer count, then the
    float32 rate (in the layer's parametrisation) is nudged by bisection in the rare case rounding still lands
    on a neighbour.
    """
    for layer, count in zip(layers, counts, strict=True):
        if not 1 <= count <= layer.numel:
            raise HarpError(f"a layer of {layer.numel} weights cannot keep {count}; counts must be in [1, numel]")
    for layer, count in zip(layers, counts, strict=True):
        layer.rate.fill_(layer.rate_for((count - 0.5) / layer.numel))
        if count == layer.numel:
            layer.rate.fill_(layer.rate_range()[1])  # the highest keep-ratio: dense
        if layer.kept() == count:
            continue
        low, high = layer.rate_range()
        for _ in range(100):
            middle = 0.5 * (low + high)
            layer.rate.fill_(middle)
            kept = layer.kept()
            if kept == count:
                break
            low, high = (middle, high) if kept < count else (low, middle)
        if layer.kept() != count:
            raise HarpError(f"cannot represent a budget of {count} of {layer.numel} weights with a float32 rate")


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
