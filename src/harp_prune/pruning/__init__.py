"""Pruning: masked layers with the STE, keep-ratio parametrisation, size loss, γ schedule and pruners.

``PRUNERS`` maps a method name to its class; ``build_pruner(name, sparsity, **options)`` makes one.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

from harp_prune.errors import HarpError
from harp_prune.pruning.base import Pruner, scaled_score_init, set_layer_densities
from harp_prune.pruning.budget import project_to_budget
from harp_prune.pruning.channel import ChannelMaskedLayer, HarpChannelPruner
from harp_prune.pruning.erk import ErkPruner, erk_densities
from harp_prune.pruning.fixed import FixedRatePruner, set_layer_counts
from harp_prune.pruning.global_magnitude import GlobalMagnitudePruner
from harp_prune.pruning.harp import HarpPruner
from harp_prune.pruning.hydra import HydraPruner
from harp_prune.pruning.lamp import LampPruner, lamp_densities
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
from harp_prune.pruning.schedule import GammaSchedule
from harp_prune.pruning.sparsity import SparsityReport, size_loss, soft_density, sparsity_report
from harp_prune.pruning.strategies import STRATEGIES, layer_densities, register_strategy

PRUNERS: dict[str, type[Pruner]] = {HarpPruner.name: HarpPruner}


def register_pruner(cls: type[Pruner]) -> type[Pruner]:
    """Class decorator: make ``cls`` available under ``cls.name``."""
    PRUNERS[cls.name] = cls
    return cls


def pruner_class(method: str) -> type[Pruner]:
    try:
        return PRUNERS[method]
    except KeyError:
        raise HarpError(f"unknown pruning method '{method}'; choose one of {', '.join(sorted(PRUNERS))}") from None


@functools.cache
def pruner_options(cls: type[Pruner]) -> frozenset[str]:
    """The options ``cls`` takes: the keyword-only parameters of its constructor, the one place a method
    declares them (a new option is a new constructor parameter, nothing else)."""
    parameters = inspect.signature(cls.__init__).parameters.values()
    return frozenset(p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY)


def build_pruner(method: str, sparsity: float, **options: Any) -> Pruner:
    """Instantiate pruner ``method``; an option it does not take (e.g. gamma0 for HYDRA) is an error."""
    cls = pruner_class(method)
    takes = pruner_options(cls)
    unknown = sorted(set(options) - takes)
    if unknown:
        raise HarpError(f"pruning method '{method}' does not take option '{unknown[0]}'; "
                        f"it takes: {', '.join(sorted(takes)) or 'no options'}")
    return cls(sparsity, **options)


def rebuild_pruner(description: dict[str, Any]) -> Pruner:
    """The pruner a checkpoint's ``Pruner.describe()`` record came from (the record holds its options)."""
    options = dict(description)
    return build_pruner(options.pop("method"), options.pop("sparsity"), **options)


# HARP's structured variant and the baselines of the comparison (method.md §6, §8), sharing one interface
for _method in (HarpChannelPruner, HydraPruner, RatesOnlyPruner, LwmPruner, GlobalMagnitudePruner, LampPruner,
                ErkPruner, RandomPruner):
    register_pruner(_method)


__all__ = [
    "LAYER_TYPES",
    "PRUNERS",
    "STRATEGIES",
    "ChannelMaskedLayer",
    "ErkPruner",
    "FixedRatePruner",
    "GammaSchedule",
    "GlobalMagnitudePruner",
    "HarpChannelPruner",
    "HarpPruner",
    "HydraPruner",
    "LampPruner",
    "LwmPruner",
    "Prunable",
    "Pruner",
    "RandomPruner",
    "RatesOnlyPruner",
    "SparsityReport",
    "WeightMask",
    "build_pruner",
    "erk_densities",
    "find_sites",
    "keep_ratio",
    "kept_count",
    "lamp_densities",
    "layer_densities",
    "mask_sites",
    "masked_layers",
    "no_prunable_error",
    "project_to_budget",
    "pruner_class",
    "pruner_options",
    "rate_for_keep_ratio",
    "rebuild_pruner",
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
