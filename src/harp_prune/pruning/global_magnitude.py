"""Global magnitude pruning: one |W| threshold across all layers."""

from __future__ import annotations

import torch

from harp_prune.pruning.fixed import global_count, magnitude_scores
from harp_prune.pruning.lwm import LwmPruner
from harp_prune.pruning.masked import WeightMask


class GlobalMagnitudePruner(LwmPruner):
    """One-shot: keep the ``round(a_t * N)`` largest |W| of the whole network, wherever they are.

    The per-layer counts are whatever that global threshold gives; weights of different layers are
    compared as they are (no normalisation), which is what makes it prune wide layers hardest.
    """

    name = "global-magnitude"

    def init_scores(self, layers: list[WeightMask]) -> None:
        magnitude_scores(layers)

    @torch.no_grad()
    def layer_counts(self, layers: list[WeightMask]) -> list[int]:
        magnitudes = torch.cat([layer.weight.detach().abs().flatten().float() for layer in layers])
        owner = torch.cat([torch.full((layer.numel,), i, dtype=torch.long) for i, layer in enumerate(layers)])
        kept = torch.topk(magnitudes, global_count(layers, self.target_density), sorted=False).indices
        counts = torch.bincount(owner[kept], minlength=len(layers))
        return [max(1, int(c)) for c in counts]
