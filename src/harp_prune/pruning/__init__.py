"""Pruning: masks on parameters with the STE, the keep-ratio parametrisation, size loss, γ schedule and pruners.

A pruner is an importance (importance.py: how a layer's weights are ranked) and an allocation (strategies.py:
how many each layer keeps), fixed (fixed.py) or learned (learned.py, HARP). ``PRUNERS`` is the registry of
methods; ``build_pruner(name, sparsity, **options)`` makes one. Every module of this package is imported
here, so a new method is one file with a ``@register_pruner`` class.
"""

from __future__ import annotations

from harp_prune.pruning.base import Pruner, set_layer_densities
from harp_prune.pruning.budget import project_proportionally, project_to_budget, set_layer_counts
from harp_prune.pruning.channel import ChannelMaskedLayer, ChannelOptions, HarpChannelPruner
from harp_prune.pruning.erk import ErkPruner, erk_densities
from harp_prune.pruning.fixed import (
    FixedRatePruner,
    LayerBudgetOptions,
    OneShotOptions,
    OneShotPruner,
)
from harp_prune.pruning.frontier import FrontierOptions, FrontierPruner
from harp_prune.pruning.global_magnitude import GlobalMagnitudePruner, global_magnitude_densities
from harp_prune.pruning.harp import HarpOptions, HarpPruner
from harp_prune.pruning.harp_paper import HarpPaperOptions, HarpPaperPruner
from harp_prune.pruning.hydra import HydraOptions, HydraPruner
from harp_prune.pruning.importance import IMPORTANCES, magnitude_scores, register_importance, scaled_score_init
from harp_prune.pruning.lamp import LampPruner, lamp_densities
from harp_prune.pruning.learned import (
    BoundedRatePruner,
    LayerBoundsOptions,
    LearnedRateOptions,
    LearnedRatePruner,
    RampedGammaOptions,
    RampedGammaPruner,
)
from harp_prune.pruning.lwm import LwmPruner
from harp_prune.pruning.masked import (
    LAYER_TYPES,
    Prunable,
    WeightMask,
    find_sites,
    mask_sites,
    masked_layers,
    no_prunable_error,
    unwrap_model,
    wrap_model,
)
from harp_prune.pruning.random_pruner import RandomPruner
from harp_prune.pruning.rates import keep_ratio, kept_count, rate_for_keep_ratio
from harp_prune.pruning.rates_only import RatesOnlyPruner
from harp_prune.pruning.registry import PRUNERS, build_pruner, pruner_class, rebuild_pruner, register_pruner
from harp_prune.pruning.schedule import GammaSchedule
from harp_prune.pruning.sharpness import ScoreSharpnessOptions, perturb_scores
from harp_prune.pruning.sparsity import SparsityReport, size_loss, soft_density, sparsity_report
from harp_prune.pruning.strategies import STRATEGIES, layer_densities, parse_strategy, register_strategy
from harp_prune.registry import import_submodules

import_submodules(__name__, __path__)

__all__ = [
    "IMPORTANCES",
    "LAYER_TYPES",
    "PRUNERS",
    "STRATEGIES",
    "BoundedRatePruner",
    "ChannelMaskedLayer",
    "ChannelOptions",
    "ErkPruner",
    "FixedRatePruner",
    "FrontierOptions",
    "FrontierPruner",
    "GammaSchedule",
    "GlobalMagnitudePruner",
    "HarpChannelPruner",
    "HarpOptions",
    "HarpPaperOptions",
    "HarpPaperPruner",
    "HarpPruner",
    "HydraOptions",
    "HydraPruner",
    "LampPruner",
    "LayerBoundsOptions",
    "LayerBudgetOptions",
    "LearnedRateOptions",
    "LearnedRatePruner",
    "LwmPruner",
    "OneShotOptions",
    "OneShotPruner",
    "Prunable",
    "Pruner",
    "RampedGammaOptions",
    "RampedGammaPruner",
    "RandomPruner",
    "RatesOnlyPruner",
    "ScoreSharpnessOptions",
    "SparsityReport",
    "WeightMask",
    "build_pruner",
    "erk_densities",
    "find_sites",
    "global_magnitude_densities",
    "keep_ratio",
    "kept_count",
    "lamp_densities",
    "layer_densities",
    "magnitude_scores",
    "mask_sites",
    "masked_layers",
    "no_prunable_error",
    "parse_strategy",
    "perturb_scores",
    "project_proportionally",
    "project_to_budget",
    "pruner_class",
    "rate_for_keep_ratio",
    "rebuild_pruner",
    "register_importance",
    "register_pruner",
    "register_strategy",
    "scaled_score_init",
    "set_layer_counts",
    "set_layer_densities",
    "size_loss",
    "soft_density",
    "sparsity_report",
    "unwrap_model",
    "wrap_model",
]
