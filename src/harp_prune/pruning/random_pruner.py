"""Random pruning: the floor every method must beat."""

from __future__ import annotations

import torch

from harp_prune.pruning.fixed import FixedRatePruner
from harp_prune.pruning.masked import Prunable, WeightMask


class RandomPruner(FixedRatePruner):
    """One-shot: each layer keeps the same fraction of weights, chosen uniformly at random (seeded)."""

    name = "random"

    def __init__(self, sparsity: float, *, seed: int = 0, prunable: Prunable | dict | None = None) -> None:
        super().__init__(sparsity, prunable=prunable)
        self.seed = int(seed)

    @torch.no_grad()
    def init_scores(self, layers: list[WeightMask]) -> None:
        generator = torch.Generator().manual_seed(self.seed)
        for layer in layers:
            layer.scores.copy_(torch.rand(layer.scores.shape, generator=generator))

    def describe(self) -> dict:
        return {**super().describe(), "seed": self.seed}
