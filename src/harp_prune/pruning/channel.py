"""HARP's structured variant (method.md §6): learned input-channel masks under a FLOPs or parameter budget.

Differences from the official code, each a fix of a documented bug or limitation:

* scores start at each input channel's true L1 norm (``W.abs().sum`` over all dims but 1), scaled as in
  HYDRA (sqrt(6 / fan_in) / max), instead of a reshape that mixes channels;
* the size loss is computed from the real layer shapes, traced on a dummy input (any architecture, any
  input size), instead of feature-map sizes hard-coded for vgg16_bn and resnet18 at 32x32;
* layers reading the same tensor share *one* score vector and rate (tie groups, found by tracing), which
  generalises the official shortcut-rate copy and also ties the masks, so the channels can be removed;
* a layer's output channels count as removed only where the graph lets them be removed (its output flows
  to one tie group through channel-wise ops): the loss measures what ``slim_model`` really achieves;
* the layers reading the image keep every input channel (the official code drops colour planes once
  a < 0.83; a 1- or 3-channel input saves almost nothing and losing a colour plane hurts);
* the target is a channel sparsity (official: the FLOPs of the uniformly thinned model), a FLOPs fraction
  or a parameter fraction (``target``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from harp_prune.errors import HarpError
from harp_prune.pruning.base import initial_densities, set_layer_densities
from harp_prune.pruning.budget import bisect_offset
from harp_prune.pruning.graph import ModelTrace, channel_links, trace_layers
from harp_prune.pruning.harp import HarpPruner
from harp_prune.pruning.masked import ChannelMaskedLayer, Prunable, WeightMask, fan_in, masked_layers
from harp_prune.pruning.rates import kept_count

TARGETS = ("channels", "flops", "params")


class ChannelCost:
    """FLOPs and prunable-parameter counts of a channel-pruned model as functions of the group keep-ratios.

    Layer l with C_in x C_out weights, kernel k and P output positions costs 2 * C_in * C_out * k * P FLOPs
    (a multiply and an add per MAC; biases, BatchNorm and activations are not counted) and C_in * C_out * k
    parameters. Pruned, C_in is scaled by its group's keep-ratio and C_out by the keep-ratio of the group its
    output is linked to (1 when no group's removal reaches it).
    """

    def __init__(self, trace: ModelTrace, links: dict[int, str]) -> None:
        self.trace = trace
        produced = {producer: group for group, producer in links.items()}
        self.names = list(trace.layers)
        self.in_group = [trace.layers[n].group for n in self.names]
        self.out_group = [produced.get(n, -1) for n in self.names]
        self.params_per_pair = [trace.layers[n].layer.weight[0, 0].numel() for n in self.names]
        self.flops_per_pair = [2 * trace.layers[n].macs_per_pair for n in self.names]
        self.pairs = [trace.layers[n].in_channels * trace.layers[n].out_channels for n in self.names]

    def measure(self, ratios: Sequence[torch.Tensor | float], kind: str) -> torch.Tensor | float:
        """FLOPs ('flops') or parameters ('params') at per-group keep-ratios ``ratios``."""
        per_pair = self.flops_per_pair if kind == "flops" else self.params_per_pair
        total: torch.Tensor | float = 0.0
        for i in range(len(self.names)):
            out_ratio = ratios[self.out_group[i]] if self.out_group[i] >= 0 else 1.0
            total = total + self.pairs[i] * per_pair[i] * ratios[self.in_group[i]] * out_ratio
        return total

    def dense(self, kind: str) -> float:
        return float(self.measure([1.0] * len(self.trace.groups), kind))


class HarpChannelPruner(HarpPruner):
    """HARP with one learned score per input channel and a learned keep-ratio per tie group.

    :param sparsity: with ``target='channels'`` the fraction of channels removed (the budget is the FLOPs of
        the model whose every prunable width is scaled by 1 - sparsity, as in the official code); with
        'flops' or 'params' the fraction of FLOPs or of prunable parameters removed.
    :param input_shape: (C, H, W) of one input, for tracing layer shapes and ties.
    :param init_density: the keep-ratio every group starts from (official 'original' strategy: about 0.99).
    """

    name = "harp-channel"
    layer_type = ChannelMaskedLayer

    def __init__(self, sparsity: float, *, gamma0: float = 0.01, alpha: float = 0.1,
                 init_strategy: str | Sequence[float] = "uniform", init_density: float = 0.99,
                 target: str = "channels", input_shape: Sequence[int] | None = None,
                 prunable: Prunable | dict | None = None) -> None:
        super().__init__(sparsity, gamma0=gamma0, alpha=alpha, init_strategy=init_strategy,
                         init_density=init_density, prunable=prunable)
        if target not in TARGETS:
            raise HarpError(f"unknown channel budget target '{target}'; choose one of {', '.join(TARGETS)}")
        self.target = target
        self.input_shape = [int(v) for v in input_shape] if input_shape is not None else None
        self.trace: ModelTrace | None = None
        self.cost: ChannelCost | None = None
        self.budget = 0.0
        self.group_layers: list[ChannelMaskedLayer] = []  # one representative per tie group

    @property
    def kind(self) -> str:
        return "params" if self.target == "params" else "flops"

    def attach(self, model: nn.Module) -> dict[str, WeightMask]:
        if self.input_shape is None:
            raise HarpError("harp-channel needs the input shape (C, H, W) to trace layer shapes; pass input_shape")
        self.trace = trace_layers(model, self.input_shape)
        links = {group: link.producer for group, link in channel_links(model, self.trace.groups).items()}
        self.cost = ChannelCost(self.trace, links)
        dense = self.cost.dense(self.kind)
        if self.target == "channels":
            uniform = [1.0 if g == self.trace.input_group else self.target_density
                       for g in range(len(self.trace.groups))]
            self.budget = float(self.cost.measure(uniform, "flops"))
        else:
            self.budget = self.target_density * dense
        self._wrapping = model
        try:
            layers = super().attach(model)
        finally:
            del self._wrapping
        self.group_layers = [layers[members[0]] for members in self.trace.groups]  # type: ignore[misc]
        return layers

    def adopt(self, model: nn.Module) -> None:
        super().adopt(model)
        if self.trace is None:
            raise HarpError("harp-channel: attach the pruner to the model before loading its state")

    @torch.no_grad()
    def initialize(self, layers: list[WeightMask]) -> None:
        assert self.trace is not None
        by_name = masked_layers(self._wrapping)
        densities = dict(zip(by_name, initial_densities(self, layers), strict=True))
        for index, members in enumerate(self.trace.groups):
            head = by_name[members[0]]
            shapes = {tuple(by_name[m].scores.shape) for m in members}
            if len(shapes) > 1:
                raise HarpError(f"layers {members} read the same tensor but have different input widths; "
                                "exclude them from channel pruning")
            scores = sum(_scaled_l1(by_name[m].weight) for m in members)
            head.scores.copy_(scores)
            for member in members[1:]:  # one shared score vector and rate: one mask for the whole group
                by_name[member].scores = head.scores
                by_name[member].rate = head.rate
            min_keep = 1.0 if index == self.trace.input_group else self.min_keep
            for member in members:
                by_name[member].min_keep = min_keep
            if min_keep < 1.0:
                set_layer_densities([head], [densities[members[0]]])

    def ratios(self, realised: bool = False) -> list[torch.Tensor | float]:
        """Per-group keep-ratios: soft (differentiable) or as the integer masks realise them."""
        if realised:
            return [layer.kept_units() / layer.units for layer in self.group_layers]
        return [layer.keep_ratio() for layer in self.group_layers]

    def soft_size(self) -> torch.Tensor:
        assert self.cost is not None
        return self.cost.measure(self.ratios(), self.kind) / self.cost.dense(self.kind)  # type: ignore[return-value]

    def size_loss(self) -> torch.Tensor:
        assert self.cost is not None
        return torch.relu(self.cost.measure(self.ratios(), self.kind) / self.budget - 1.0)

    def realised(self) -> dict[str, float]:
        """FLOPs and parameter fractions the current masks realise (what slimming keeps of the prunable layers)."""
        assert self.cost is not None
        ratios = self.ratios(realised=True)
        return {kind: float(self.cost.measure(ratios, kind)) / self.cost.dense(kind) for kind in ("flops", "params")}

    @torch.no_grad()
    def finalize(self) -> float:
        """Shift every group's rate logit by one δ: the largest realised size at or under the budget."""
        assert self.cost is not None
        cost = self.cost
        heads = self.group_layers

        def size(offset: float) -> float:
            ratios = []
            for layer in heads:
                sig = 1.0 / (1.0 + math.exp(-(float(layer.rate) + offset)))
                ratios.append(kept_count(layer.min_keep + (1.0 - layer.min_keep) * sig, layer.units) / layer.units)
            return float(cost.measure(ratios, self.kind))

        shift = bisect_offset(size, self.budget, closest=False)
        for layer in heads:
            layer.rate.add_(shift)
        return shift

    def end_epoch(self, epoch: int) -> dict[str, float]:
        row = super().end_epoch(epoch)
        row.update({f"realised_{k}": v for k, v in self.realised().items()})
        return row

    def describe(self) -> dict:
        return {**super().describe(), "target": self.target, "input_shape": self.input_shape}


def _scaled_l1(weight: torch.Tensor) -> torch.Tensor:
    """Per-input-channel L1 norm, scaled as HYDRA scales scores: sqrt(6 / fan_in) * l1 / max(l1)."""
    l1 = weight.detach().abs().sum(dim=[d for d in range(weight.dim()) if d != 1])
    return math.sqrt(6.0 / fan_in(weight)) * l1 / l1.max().clamp_min(1e-12)
