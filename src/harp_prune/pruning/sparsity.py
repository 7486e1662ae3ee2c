"""Sparsity counted from the real masks (or zero weights), globally and per layer, and the size loss."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from harp_prune.pruning.masked import MaskedLayer, iter_prunable, masked_layers


@dataclass
class LayerSparsity:
    name: str
    numel: int
    kept: int

    @property
    def density(self) -> float:
        return self.kept / self.numel


@dataclass
class SparsityReport:
    """Global and per-layer kept counts of the conv/linear weights (biases and BN are not counted)."""

    layers: list[LayerSparsity]

    @property
    def total(self) -> int:
        return sum(layer.numel for layer in self.layers)

    @property
    def kept(self) -> int:
        return sum(layer.kept for layer in self.layers)

    @property
    def density(self) -> float:
        return self.kept / self.total

    @property
    def sparsity(self) -> float:
        return 1.0 - self.density

    def as_dict(self) -> dict:
        return {
            "sparsity": self.sparsity, "density": self.density, "kept": self.kept, "total": self.total,
            "layers": [{**asdict(layer), "density": layer.density} for layer in self.layers],
        }


@torch.no_grad()
def sparsity_report(model: nn.Module) -> SparsityReport:
    """Count kept weights: the mask of each MaskedLayer (channel masks expanded over the weight they zero),
    the non-zeros of each plain layer."""
    wrapped = masked_layers(model)
    layers = []
    for name, layer in iter_prunable(model):
        if name in wrapped:
            kept = int(wrapped[name].weight_mask().expand_as(layer.weight).sum())
        else:
            kept = int(torch.count_nonzero(layer.weight))
        layers.append(LayerSparsity(name, layer.weight.numel(), kept))
    return SparsityReport(layers)


def soft_density(layers: list[MaskedLayer]) -> torch.Tensor:
    """sum_l N_l a(l) / sum_l N_l: the differentiable expected kept fraction (method.md §2.2)."""
    total = sum(layer.numel for layer in layers)
    return sum(layer.numel * layer.keep_ratio() for layer in layers) / total


def size_loss(layers: list[MaskedLayer], target_density: float) -> torch.Tensor:
    """L_hw = max(soft_density / a_t - 1, 0): a one-sided hinge on the relative overshoot."""
    return torch.relu(soft_density(layers) / target_density - 1.0)
