"""HARP's structured variant (docs/method.md): learned input-channel masks under a FLOPs or parameter budget.

Differences from the official code, each a fix of a documented bug or limitation:

* scores start at each input channel's true L1 norm (``W.abs().sum`` over all dims but 1), scaled as in
  HYDRA (sqrt(6 / fan_in) / max), instead of a reshape that mixes channels;
* the size loss is computed from the real layer shapes, traced on a dummy input (any architecture, any
  input size), instead of feature-map sizes hard-coded for vgg16_bn and resnet18 at 32x32;
* layers reading the same tensor, the tensors one module reads when it runs twice, and a depthwise conv's
  input and output share *one* score vector and rate (tie groups, found by tracing), which generalises the
  official shortcut-rate copy and also ties the masks, so the channels can be removed; grouped convs
  prune one position of every group per unit (``ChannelMaskedLayer``);
* a layer's output channels count as removed only where the graph lets them be removed (its output flows
  to one tie group through channel-wise ops): the loss measures what ``slim_model`` really achieves;
* the layers reading the image keep every input channel (the official code drops colour planes once
  a < 0.83; a 1- or 3-channel input saves almost nothing and losing a colour plane hurts);
* the target is a channel sparsity (official: the FLOPs of the uniformly thinned model), a FLOPs fraction
  or a parameter fraction (``target``); ``finalize`` keeps the integer widths within it, and
  ``budget_report`` reports that quantity, not the weight sparsity (which channel pruning leaves low).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from harp_prune.errors import HarpError
from harp_prune.pruning.base import set_layer_densities
from harp_prune.pruning.budget import bisect_offset
from harp_prune.pruning.conv import conv_groups, is_depthwise
from harp_prune.pruning.graph import ModelTrace, trace_layers
from harp_prune.pruning.learned import RampedGammaOptions, RampedGammaPruner
from harp_prune.pruning.masked import PRUNABLE_TYPES, find_sites, masked_layers
from harp_prune.pruning.registry import register_pruner
from harp_prune.pruning.weight_mask import WeightMask, fan_in
from harp_prune.registry import option

TARGETS = ("channels", "flops", "params")


class ChannelMaskedLayer(WeightMask):
    """Input-channel masking (docs/method.md, 'Channel (structured) variant'): one score per input channel;
    the mask zeroes W[:, c, ...].

    Scores start at each channel's true L1 norm ``W.abs().sum`` over every dimension but the unit's (the
    official code's reshape groups contiguous chunks of the out-major tensor instead). A depthwise conv's
    weight is [C, 1, k, k]: input channel c is its row c, so its unit axis is 0. A grouped conv's dimension 1
    is the position within a group: one unit prunes that position in every group, so the groups stay equal.
    """

    def __init__(self, weight: torch.Tensor, min_keep: float = 0.0, module: nn.Module | None = None) -> None:
        if not isinstance(module, PRUNABLE_TYPES):
            raise HarpError(f"harp-channel masks the input channels of Conv2d/Linear layers, not a "
                            f"{type(module).__name__}'s parameter; exclude it (prune.exclude) or use --method harp")
        # set before WeightMask.__init__, which asks initial_scores for the scores' shape
        self.groups = conv_groups(module)
        self.depthwise = is_depthwise(module)
        super().__init__(weight, min_keep, module)

    @property
    def unit_dim(self) -> int:
        """The weight dimension the mask ranks: 0 (output = input channel) for depthwise convs, else 1."""
        return 0 if self.depthwise else 1

    def initial_scores(self, weight: torch.Tensor) -> torch.Tensor:
        return channel_l1(weight, self.unit_dim)

    def mask_view_shape(self) -> tuple[int, ...]:
        shape = [1] * len(self.weight_shape)
        shape[self.unit_dim] = self.units
        return tuple(shape)


def channel_l1(weight: torch.Tensor, unit_dim: int) -> torch.Tensor:
    """The L1 norm of the weights each unit along ``unit_dim`` masks."""
    return weight.detach().abs().sum(dim=[d for d in range(weight.dim()) if d != unit_dim])


class ChannelCost:
    """FLOPs and prunable-parameter counts of a channel-pruned model as functions of the group keep-ratios.

    Layer l with P connected channel pairs (C_in * C_out / groups), kernel k and O output positions (summed
    over its calls) costs 2 * P * k * O FLOPs (a multiply and an add per MAC; biases, BatchNorm and
    activations are not counted) and P * k parameters. Pruned, the pairs scale by the keep-ratio of the
    layer's group and by that of the group its output channels are linked to (1 when no group's removal
    reaches them; a depthwise conv's outputs are its inputs, so they are not scaled twice).
    """

    def __init__(self, trace: ModelTrace) -> None:
        self.trace = trace
        produced = trace.produced()
        self.names = list(trace.layers)
        self.in_group = [trace.layers[n].group for n in self.names]
        self.out_group = [produced.get(n, -1) for n in self.names]
        self.params_per_pair = [trace.layers[n].layer.weight[0, 0].numel() for n in self.names]
        self.flops_per_pair = [2 * trace.layers[n].macs_per_pair for n in self.names]
        self.pairs = [trace.layers[n].pairs for n in self.names]

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


@dataclass(frozen=True)
class ChannelOptions(RampedGammaOptions):
    init_density: float = option(0.99, "the keep-ratio every group starts from (the official 'original' strategy)")
    channel_target: str = option("channels", "what --sparsity removes: channels (the FLOPs of every prunable width "
                                             "scaled by 1 - sparsity, as the official code), flops or params",
                                 choices=TARGETS)


@register_pruner
class HarpChannelPruner(RampedGammaPruner):
    """HARP on channels: one learned score per input channel and a learned keep-ratio per tie group.

    With ``channel_target='channels'`` the sparsity is the fraction of channels removed (the budget is the
    FLOPs of the model whose every prunable width is scaled by 1 - sparsity, as in the official code); with
    'flops' or 'params' the fraction of FLOPs or of prunable parameters removed. Needs ``input_shape``
    (C, H, W) to trace layer shapes and ties. Options: ``ChannelOptions``.
    """

    name = "harp-channel"
    Options = ChannelOptions
    layer_type = ChannelMaskedLayer

    def __init__(self, sparsity: float, options: Any = None, **kwargs: Any) -> None:
        super().__init__(sparsity, options, **kwargs)
        self.target = self.options.channel_target
        self.trace: ModelTrace | None = None
        self.cost: ChannelCost | None = None
        self.budget = 0.0
        self.group_layers: list[ChannelMaskedLayer | None] = []  # one representative per tie group

    @property
    def kind(self) -> str:
        return "params" if self.target == "params" else "flops"

    def attach(self, model: nn.Module) -> dict[str, WeightMask]:
        if self.input_shape is None:
            raise HarpError("harp-channel needs the input shape (C, H, W) to trace layer shapes; pass input_shape")
        selected = find_sites(model, self.prunable)[0]
        for site in selected.values():
            holders = {owner_name for owner_name, _, _ in site.owners}
            if len({id(module) for _, module, _ in site.owners}) > 1:
                raise HarpError(f"harp-channel cannot mask input channels of a weight shared by several layers "
                                f"({', '.join(sorted(holders))}); exclude them (prune.exclude) or use --method harp")
        self.trace = trace_layers(model, self.input_shape)
        for index, members in enumerate(self.trace.groups):  # a group with an excluded reader keeps its channels
            excluded = [m for m in members if m not in selected]
            if excluded:
                self.trace.frozen.setdefault(index, f"layer(s) {excluded} are excluded from pruning")
        self.cost = ChannelCost(self.trace)
        dense = self.cost.dense(self.kind)
        if self.target == "channels":  # the groups that can be thinned, thinned uniformly
            uniform = [1.0 if self._keeps_all(g) else self.target_density for g in range(len(self.trace.groups))]
            self.budget = float(self.cost.measure(uniform, "flops"))
        else:
            self.budget = self.target_density * dense
        self._wrapping = model
        try:
            layers = super().attach(model)
        finally:
            del self._wrapping
        # one representative per group; None where no member carries a mask (all excluded: always whole)
        self.group_layers = [next((layers[m] for m in members if m in layers), None)  # type: ignore[misc]
                             for members in self.trace.groups]
        return layers

    def _keeps_all(self, group: int) -> bool:
        """The image's group and frozen groups keep every channel."""
        assert self.trace is not None
        return group == self.trace.input_group or group in self.trace.frozen

    def adopt(self, model: nn.Module) -> None:
        super().adopt(model)
        if self.trace is None:
            raise HarpError("harp-channel: attach the pruner to the model before loading its state")

    @torch.no_grad()
    def initialize(self, layers: list[WeightMask]) -> None:
        assert self.trace is not None
        by_name: dict[str, ChannelMaskedLayer] = masked_layers(self._wrapping)  # type: ignore[assignment]
        densities = dict(zip(by_name, self.initial_densities(layers), strict=True))
        for index, members in enumerate(self.trace.groups):
            if self._keeps_all(index):  # no shared mask needed: every member keeps everything
                for member in members:
                    if member in by_name:
                        by_name[member].min_keep = 1.0
                continue
            head = by_name[members[0]]
            head.scores.copy_(sum(_scaled_l1(by_name[m]) for m in members))
            for member in members[1:]:  # one shared score vector and rate: one mask for the whole group
                by_name[member].scores = head.scores
                by_name[member].rate = head.rate
            for member in members:
                by_name[member].min_keep = self.min_keep
            set_layer_densities([head], [densities[members[0]]])

    def ratios(self, realised: bool = False) -> list[torch.Tensor | float]:
        """Per-group keep-ratios: soft (differentiable) or as the integer masks realise them."""
        if realised:
            return [1.0 if layer is None else layer.kept_units() / layer.units for layer in self.group_layers]
        return [1.0 if layer is None else layer.keep_ratio() for layer in self.group_layers]

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
        """Shift every group's rate logit by one δ: the largest whose integer widths stay at or under the budget.

        Each candidate δ is evaluated by applying it (``rate.add_(δ)`` on the float32 rates) and counting
        the widths the masks then keep, so the chosen δ realises exactly the size it was chosen for.
        """
        assert self.cost is not None
        cost, heads = self.cost, [layer for layer in self.group_layers if layer is not None]
        learned = [layer.rate.detach().clone() for layer in heads]

        def size(offset: float) -> float:
            for layer, rate in zip(heads, learned, strict=True):
                layer.rate.copy_(rate).add_(offset)
            return float(cost.measure(self.ratios(realised=True), self.kind))

        shift = bisect_offset(size, self.budget, closest=False)
        realised = size(shift)
        if realised > self.budget:
            for layer, rate in zip(heads, learned, strict=True):
                layer.rate.copy_(rate)
            dense = cost.dense(self.kind)
            frozen = len(self.trace.frozen)  # type: ignore[union-attr]
            raise HarpError(
                f"harp-channel cannot meet its {self.kind} budget of {self.budget / dense:.4f} of the dense model: "
                f"the smallest widths a common rate shift reaches cost {realised / dense:.4f} (every group at its "
                f"floor a_min, the image channels{f' and {frozen} frozen groups' if frozen else ''} kept whole); "
                "lower prune.alpha or the sparsity")
        return shift

    def budget_report(self) -> dict[str, Any]:
        """The budget in the target's own quantity (FLOPs or parameters), with realised channels and weights."""
        assert self.cost is not None and self.trace is not None
        pruned = [i for i in range(len(self.group_layers)) if not self._keeps_all(i)]
        heads = [head for i in pruned if (head := self.group_layers[i]) is not None]
        channels = sum(h.kept_units() for h in heads) / max(1, sum(h.units for h in heads))
        realised = self.realised()
        return {**super().budget_report(), "quantity": self.kind, "sparsity_of": self.target,
                "target": self.budget / self.cost.dense(self.kind), "realised": realised[self.kind],
                "flops": realised["flops"], "params": realised["params"], "channels": channels}

    def end_epoch(self, epoch: int) -> dict[str, float]:
        row = super().end_epoch(epoch)
        row.update({f"realised_{k}": v for k, v in self.realised().items()})
        return row


def _scaled_l1(layer: ChannelMaskedLayer) -> torch.Tensor:
    """Per-unit L1 norm, scaled as HYDRA scales scores: sqrt(6 / fan_in) * l1 / max(l1)."""
    l1 = channel_l1(layer.weight, layer.unit_dim)
    return math.sqrt(6.0 / fan_in(layer.weight)) * l1 / l1.max().clamp_min(1e-12)
