"""Importance: how the weights of a layer are ranked (the other half of a pruner; strategies.py says how many
each layer keeps). An importance sets a layer's scores S; the mask keeps the largest |S|.

Registered: ``magnitude`` (|W|), ``scaled-magnitude`` (HYDRA's and HARP's initial scores) and ``random``
(seeded). A learning method (HARP, HYDRA) starts from one and trains the scores.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from harp_prune.pruning.weight_mask import WeightMask, fan_in
from harp_prune.registry import Registry

Importance = Callable[[list[WeightMask], int], None]  # (layers, seed) -> sets layer.scores in place

IMPORTANCES: Registry[Importance] = Registry("importance")


def register_importance(name: str, importance: Importance) -> None:
    """Make ``name`` usable as the ranking of fixed-rate methods (``one-shot``'s ``importance`` option)."""
    IMPORTANCES.register(name, importance, summary=(importance.__doc__ or "").strip().splitlines()[0])


@torch.no_grad()
def magnitude_scores(layers: list[WeightMask], seed: int = 0) -> None:
    """S = |W|: the within-layer ranking of the magnitude baselines."""
    for layer in layers:
        layer.scores.copy_(layer.weight.detach().abs())


@torch.no_grad()
def scaled_score_init(layers: list[WeightMask], seed: int = 0) -> None:
    """S = sqrt(6 / fan_in) * W / max|W| (HYDRA's scaled init): the initial ranking is weight magnitude."""
    for layer in layers:
        weight = layer.weight.detach()
        peak = weight.abs().max().clamp_min(1e-12)
        layer.scores.copy_(math.sqrt(6.0 / fan_in(weight)) * weight / peak)


@torch.no_grad()
def random_scores(layers: list[WeightMask], seed: int = 0) -> None:
    """S uniform in [0, 1), drawn from a generator seeded with ``seed``: the floor every ranking must beat."""
    generator = torch.Generator().manual_seed(seed)
    for layer in layers:
        layer.scores.copy_(torch.rand(layer.scores.shape, generator=generator))


register_importance("magnitude", magnitude_scores)
register_importance("scaled-magnitude", scaled_score_init)
register_importance("random", random_scores)
