"""HARP as the paper and the authors' code run it (``harp-paper``): learn how many weights each layer keeps (r)
and which (S) under one global size budget, with the optimiser stepping sigmoid rates and γ on the step-wise
schedule. ``harp`` (harp.py) is the default; docs/method.md says why and what differs."""

from __future__ import annotations

from dataclasses import dataclass

from harp_prune.pruning.base import set_layer_densities
from harp_prune.pruning.importance import scaled_score_init
from harp_prune.pruning.learned import (
    BoundedRatePruner,
    LayerBoundsOptions,
    RampedGammaOptions,
    RampedGammaPruner,
)
from harp_prune.pruning.registry import register_pruner
from harp_prune.pruning.weight_mask import WeightMask


@dataclass(frozen=True)
class HarpPaperOptions(LayerBoundsOptions, RampedGammaOptions):
    """Options of ``harp-paper``."""


@register_pruner
class HarpPaperPruner(BoundedRatePruner, RampedGammaPruner):
    """HARP (Zhao & Wressnegger, ICLR 2023) with the paper's mechanics: learned per-layer rates and scores
    under a size loss.

    Scores start at the scaled weight magnitude, rates at the initial strategy (uniform 10% kept by
    default, whatever the target). Each pruning step adds γ_e * L_hw to the adversarial loss, with
    γ_e = (e + 1) γ0 until the budget is first met at the end of an epoch, then frozen. Both per-layer
    bounds enter the parametrisation a = lo + (hi - lo) sigmoid(r), not a clamp, so the rate gradient of
    the STE stays exact. Options: ``HarpOptions``; the equations: docs/method.md.

    Example::

        pruner = HarpPaperPruner(0.99, gamma0=0.05)
        pruner.attach(model)
        optimizer = torch.optim.SGD(pruner.trainable_parameters(model), lr=0.1, momentum=0.9)
    """

    name = "harp-paper"
    Options = HarpPaperOptions

    def initialize(self, layers: list[WeightMask]) -> None:
        self.set_bounds(layers)
        scaled_score_init(layers)
        set_layer_densities(layers, self.initial_densities(layers))
