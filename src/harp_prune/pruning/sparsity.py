"""Sparsity counted from the real masks (or zero weights), globally and per layer, and the size loss."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from harp_prune.pruning.masked import WeightMask, find_sites, mask_sites


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
    """Kept counts of the pruned parameters, globally and per parameter, and what is left dense.

    ``layers`` are the pruned (masked) parameters, each counted once even when several modules hold it;
    sparsity and density are over them. ``dense_layers`` are prunable-type weights that carry no mask
    (excluded by the user, or all of them on an unpruned model counted by their non-zeros), and
    ``other_parameters`` counts every other parameter element (biases, normalisation, embeddings, scores).
    """

    layers: list[LayerSparsity]
    dense_layers: list[LayerSparsity] = field(default_factory=list)
    other_parameters: int = 0

    @property
    def total(self) -> int:
        return sum(layer.numel for layer in self.layers)

    @property
    def kept(self) -> int:
        return sum(layer.kept for layer in self.layers)

    @property
    def density(self) -> float:
        return self.kept / self.total if self.total else 1.0

    @property
    def sparsity(self) -> float:
        return 1.0 - self.density

    def as_dict(self) -> dict:
        return {
            "sparsity": self.sparsity, "density": self.density, "kept": self.kept, "total": self.total,
            "layers": [{**asdict(layer), "density": layer.density} for layer in self.layers],
            "dense_layers": [{**asdict(layer), "density": layer.density} for layer in self.dense_layers],
            "other_parameters": self.other_parameters,
        }


@torch.no_grad()
def sparsity_report(model: nn.Module) -> SparsityReport:
    """Count kept weights from the real masks (channel masks expanded over the weight they zero).

    On a model without masks (a zeroed export, a dense model) every default-prunable weight is counted by its
    non-zeros instead. Each Parameter is counted once, however many modules hold it.
    """
    masked = mask_sites(model)
    layers = []
    for name, site in masked.items():
        assert site.mask is not None
        kept = int(site.mask.weight_mask().expand(site.mask.weight_shape).sum())
        layers.append(LayerSparsity(name, site.parameter.numel(), kept))
    counted = {id(site.parameter) for site in masked.values()}
    dense = []
    for name, site in find_sites(model)[0].items():
        if id(site.parameter) not in counted:
            dense.append(LayerSparsity(name, site.parameter.numel(), int(torch.count_nonzero(site.parameter))))
            counted.add(id(site.parameter))
    if not masked:
        layers, dense = dense, []
    machinery = {id(p) for module in model.modules() if isinstance(module, WeightMask) for p in module.parameters()}
    other = sum(p.numel() for p in model.parameters() if id(p) not in counted and id(p) not in machinery)
    return SparsityReport(layers, dense, other)


def soft_density(layers: list[WeightMask]) -> torch.Tensor:
    """sum_l N_l a(l) / sum_l N_l: the differentiable expected kept fraction (docs/method.md, 'Size loss')."""
    total = sum(layer.numel for layer in layers)
    return sum(layer.numel * layer.keep_ratio() for layer in layers) / total


def size_loss(layers: list[WeightMask], target_density: float) -> torch.Tensor:
    """L_hw = max(soft_density / a_t - 1, 0): a one-sided hinge on the relative overshoot."""
    return torch.relu(soft_density(layers) / target_density - 1.0)
