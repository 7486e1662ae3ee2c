"""Fixed-rate pruners: every layer keeps a set number of weights, chosen before pruning starts.

A fixed-rate method is an importance (importance.py: how the weights of a layer are ranked) and a layer budget
(strategies.py: how many each layer keeps, evaluated at the *target* density). The baselines HARP is compared
with are fixed pairs (LWM = magnitude + uniform, LAMP = magnitude + lamp, ...); ``one-shot`` takes any pair
as options, and HYDRA trains its scores within any layer budget.

The rates are set so that each layer's integer top-k count is exactly the intended one, and ``finalize``
leaves them alone (a budget met within the projection's tolerance is not projected).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch

from harp_prune.pruning.base import Pruner
from harp_prune.pruning.budget import set_layer_counts
from harp_prune.pruning.importance import IMPORTANCES
from harp_prune.pruning.registry import register_pruner
from harp_prune.pruning.strategies import layer_densities, parse_strategy
from harp_prune.pruning.weight_mask import WeightMask
from harp_prune.registry import option


def counts_for_densities(layers: list[WeightMask], densities: Sequence[float]) -> list[int]:
    """Per-layer kept counts round(d * N), at least 1 weight, at most all of them."""
    return [min(layer.numel, max(1, round(d * layer.numel))) for layer, d in zip(layers, densities, strict=True)]


def global_count(layers: list[WeightMask], density: float) -> int:
    """The number of weights a global budget at ``density`` keeps (at least one per layer)."""
    return max(len(layers), math.floor(density * sum(layer.numel for layer in layers) + 0.5))


def global_top_k_densities(layers: list[WeightMask], scores: Sequence[torch.Tensor], density: float) -> list[float]:
    """The keep-ratios of keeping the ``global_count`` highest of all layers' per-weight ``scores`` together
    (at least one weight per layer): a global threshold, turned into a per-layer budget."""
    device = scores[0].device  # the scores' own device: on a GPU, CPU owners indexed by CUDA indices fail
    owner = torch.cat([torch.full((layer.numel,), i, dtype=torch.long, device=device)
                       for i, layer in enumerate(layers)])
    kept = torch.topk(torch.cat([score.flatten() for score in scores]), global_count(layers, density),
                      sorted=False).indices
    counts = torch.bincount(owner[kept], minlength=len(layers))
    return [max(1, int(count)) / layer.numel for count, layer in zip(counts, layers, strict=True)]


@dataclass(frozen=True)
class LayerBudgetOptions:
    layer_budget: str = option("uniform", "the per-layer keep-ratios at the target density: a layer budget (uniform, "
                                          "lamp, erk, global-magnitude, ...) or comma-separated keep-ratios, one per "
                                          "prunable layer")

    def __post_init__(self) -> None:
        parse_strategy(self.layer_budget, "layer_budget")


@dataclass(frozen=True)
class OneShotOptions(LayerBudgetOptions):
    importance: str = option("magnitude", "how the weights of a layer are ranked", choices=IMPORTANCES)


class FixedRatePruner(Pruner):
    """A pruner whose per-layer budget is fixed from the start (rates are never trained).

    ``importance`` and ``layer_budget`` name the ranking and the allocation: class attributes for a baseline
    that is one fixed pair, properties reading the options for a method that lets the user choose.
    """

    learns_rates = False
    importance: ClassVar[str] = "magnitude"
    layer_budget: ClassVar[str] = "uniform"

    def init_scores(self, layers: list[WeightMask]) -> None:
        """Set the scores that rank the weights within each layer: the importance."""
        IMPORTANCES.get(self.importance).factory(layers, self.seed)

    def layer_counts(self, layers: list[WeightMask]) -> list[int]:
        """How many weights each layer keeps: the layer budget at the target density."""
        return counts_for_densities(layers, layer_densities(self.layer_budget, layers, self.target_density))

    def initialize(self, layers: list[WeightMask]) -> None:
        self.init_scores(layers)
        set_layer_counts(layers, self.layer_counts(layers))

    def finalize(self) -> float:
        """No projection: the fixed budget already is the method's answer (returns a shift of 0)."""
        return 0.0


@register_pruner
class OneShotPruner(FixedRatePruner):
    """Any importance with any layer budget, one-shot (nothing is trained while pruning; fine-tuning adapts the
    kept weights). ``--method one-shot --prune-importance random --prune-layer-budget lamp`` is random
    pruning within LAMP's per-layer budgets.
    """

    name = "one-shot"
    Options = OneShotOptions

    @property  # type: ignore[override]
    def importance(self) -> str:
        return self.options.importance

    @property  # type: ignore[override]
    def layer_budget(self) -> str:
        return self.options.layer_budget
