"""Fixed-rate pruners: every layer keeps a set number of weights, chosen before pruning starts.

The baselines HARP is compared with (HYDRA, LWM, LAMP, ERK, random, global magnitude) differ from HARP in
that the per-layer budget is not learned: it comes from a layer strategy evaluated at the *target* density
(or, for global magnitude, from one threshold over all layers). Each subclass says how the scores are set
(``init_scores``) and, if it wants, how the per-layer counts are found (``layer_counts``).

The rates are set so that each layer's integer top-k count is exactly the intended one, and
``finalize`` leaves them alone: the common logit shift of HARP's budget projection would distort a
strategy's layer budgets (and a global threshold's counts).
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Sequence

import torch

from harp_prune.errors import HarpError
from harp_prune.pruning.base import Pruner, set_layer_densities
from harp_prune.pruning.masked import Prunable, WeightMask
from harp_prune.pruning.rates import check_sparsity
from harp_prune.pruning.strategies import layer_densities


@torch.no_grad()
def set_layer_counts(layers: list[WeightMask], counts: Sequence[int]) -> None:
    """Set each layer's rate logit so that its mask keeps exactly ``counts[l]`` weights.

    The keep-ratio is aimed at the middle of the interval of ratios that give that integer count, then the
    float32 logit is nudged by bisection in the rare case rounding still lands on a neighbour.
    """
    for layer, count in zip(layers, counts, strict=True):
        if not 1 <= count <= layer.numel:
            raise HarpError(f"a layer of {layer.numel} weights cannot keep {count}; counts must be in [1, numel]")
    set_layer_densities(layers, [(count - 0.5) / layer.numel for layer, count in zip(layers, counts, strict=True)])
    for layer, count in zip(layers, counts, strict=True):
        if count == layer.numel:
            layer.rate.fill_(30.0)  # sigmoid(30) == 1 in float32: dense
        if layer.kept() == count:
            continue
        low, high = -30.0, 30.0
        for _ in range(100):
            middle = 0.5 * (low + high)
            layer.rate.fill_(middle)
            kept = layer.kept()
            if kept == count:
                break
            low, high = (middle, high) if kept < count else (low, middle)
        if layer.kept() != count:
            raise HarpError(f"cannot represent a budget of {count} of {layer.numel} weights with a float32 rate")


def counts_for_densities(layers: list[WeightMask], densities: Sequence[float]) -> list[int]:
    """Per-layer kept counts round(d * N), at least 1 weight, at most all of them."""
    return [min(layer.numel, max(1, round(d * layer.numel))) for layer, d in zip(layers, densities, strict=True)]


class FixedRatePruner(Pruner):
    """A pruner whose per-layer budget is fixed from the start (rates are never trained).

    :param layer_budget: the strategy (``uniform``, ``lamp``, ``erk``, or one density per layer) that gives
        the per-layer keep-ratios, evaluated at the target density.
    """

    learns_rates = False
    default_budget = "uniform"

    def __init__(self, sparsity: float, *, layer_budget: str | Sequence[float] | None = None,
                 prunable: Prunable | dict | None = None) -> None:
        budget = self.default_budget if layer_budget is None else layer_budget
        sparsity = check_sparsity(sparsity)
        # a_min = 0: the budget is set exactly, so no floor is needed (and any strategy value is representable)
        super().__init__(sparsity, alpha=0.0, init_strategy=budget, init_density=1.0 - sparsity, prunable=prunable)

    @property
    def layer_budget(self) -> str | Sequence[float]:
        return self.init_strategy

    @abstractmethod
    def init_scores(self, layers: list[WeightMask]) -> None:
        """Set the scores that rank the weights within each layer."""

    def layer_counts(self, layers: list[WeightMask]) -> list[int]:
        """How many weights each layer keeps: the layer budget strategy at the target density."""
        return counts_for_densities(layers, layer_densities(self.layer_budget, layers, self.target_density))

    def initialize(self, layers: list[WeightMask]) -> None:
        self.init_scores(layers)
        set_layer_counts(layers, self.layer_counts(layers))

    def finalize(self) -> float:
        """No projection: the fixed budget already is the method's answer (returns a shift of 0)."""
        return 0.0

    def describe(self) -> dict:
        return {"method": self.name, "sparsity": self.sparsity, **self.describe_prunable()}


@torch.no_grad()
def magnitude_scores(layers: list[WeightMask]) -> None:
    """S = |W|: the within-layer ranking of the magnitude baselines."""
    for layer in layers:
        layer.scores.copy_(layer.weight.detach().abs())


def total_weights(layers: list[WeightMask]) -> int:
    return sum(layer.numel for layer in layers)


def global_count(layers: list[WeightMask], density: float) -> int:
    """The number of weights a global budget at ``density`` keeps (at least one per layer)."""
    return max(len(layers), math.floor(density * total_weights(layers) + 0.5))
