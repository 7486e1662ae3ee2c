"""Physically slimmed models: pruned input channels removed, and their producers' filters with them.

For each tie group (layers sharing a channel mask) with kept units K, and each tensor its layers read:

* if the tensor comes from one Conv2d/Linear through channel-wise ops only (see ``pruning.graph``), the
  producer keeps only output channels K, the BatchNorms in between only entries K, and the readers only
  input channels K: the dropped channels are never computed;
* otherwise (a residual sum, a flatten, a tensor also read by something else, a module used twice) the
  readers keep input channels K and select them with an index gather (``ChannelSelect``) in front.

A depthwise conv keeps channels K (its input and output are the same channels); a grouped conv keeps
positions K of every group. Both are exact: a masked-out input channel contributes nothing, so the
outputs equal the masked model's. The structure is a pure function of the architecture and the kept
indices, so a slim checkpoint stores the model spec, the kept indices and the state dict, and
``load_slim`` rebuilds it without pickle.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from harp_prune.errors import HarpError
from harp_prune.pruning.channel import ChannelMaskedLayer
from harp_prune.pruning.graph import conv_groups, expand_units, is_depthwise, trace_layers
from harp_prune.pruning.masked import masked_layers, prunable_modules, unwrap_model

FORMAT = "harp-slim-v1"


class ChannelSelect(nn.Module):
    """Keep the given channels (dimension 1) of the input: ``x.index_select(1, index)``."""

    def __init__(self, index: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("index", index.clone().long())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.index_select(1, self.index)


@dataclass
class SlimPlan:
    """Kept input units and output channels per layer, BatchNorm entries, and which layers gather their input.

    ``inputs`` holds mask units: input channels, but a depthwise conv's channels and a grouped conv's
    positions within each group.
    """

    inputs: dict[str, list[int]] = field(default_factory=dict)
    outputs: dict[str, list[int]] = field(default_factory=dict)
    batchnorms: dict[str, list[int]] = field(default_factory=dict)
    gathers: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"inputs": self.inputs, "outputs": self.outputs, "batchnorms": self.batchnorms,
                "gathers": self.gathers}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SlimPlan:
        return cls(dict(data["inputs"]), dict(data["outputs"]), dict(data["batchnorms"]), list(data["gathers"]))


def channel_keep(model: nn.Module) -> dict[str, list[int]]:
    """Kept input channels of every channel-masked layer of a wrapped model (only those that drop some)."""
    keep = {}
    for name, layer in masked_layers(model).items():
        if not isinstance(layer, ChannelMaskedLayer):
            raise HarpError(f"layer '{name}' is weight-masked; slimming needs a channel-pruned model "
                            "(prune with --method harp-channel)")
        kept = torch.nonzero(layer.mask()).flatten().tolist()
        if len(kept) < layer.units:
            keep[name] = kept
    return keep


def plan_slimming(model: nn.Module, keep: dict[str, list[int]], input_shape: Sequence[int]) -> SlimPlan:
    """Decide, by tracing the plain ``model``, what each layer and BatchNorm keeps."""
    trace = trace_layers(model, input_shape)
    plan = SlimPlan()
    for index, members in enumerate(trace.groups):
        kept = {tuple(keep[m]) for m in members if m in keep}
        if not kept:
            continue
        if len(kept) > 1 or any(m not in keep for m in members):
            raise HarpError(f"layers {members} share an input-channel mask but keep different channels; "
                            "slimming needs tied masks (prune with harp-channel, which ties them)")
        if index in trace.frozen:
            raise HarpError(f"layers {members} cannot be slimmed: {trace.frozen[index]}; "
                            "prune with harp-channel, which keeps their channels")
        units = list(next(iter(kept)))
        channels = expand_units(units, trace.layers[members[0]].layer)
        for member in members:
            plan.inputs[member] = units
            if trace.gathers(member):
                plan.gathers.append(member)
        for source in trace.sources[index]:
            if source.producer is None:
                continue
            if not is_depthwise(trace.layers[source.producer].layer):  # a depthwise producer is a member
                plan.outputs[source.producer] = channels
            for bn in source.batchnorms:
                plan.batchnorms[bn] = channels
    return plan


def _slice_layer(layer: nn.Module, inputs: list[int] | None, outputs: list[int] | None) -> nn.Module:
    """The layer with only input units ``inputs`` and output channels ``outputs`` (None: all)."""
    weight = layer.weight.detach()
    bias = layer.bias.detach() if layer.bias is not None else None
    groups = conv_groups(layer)
    if is_depthwise(layer):  # input channel c is output channel c: both are row c
        outputs = inputs
        groups = len(inputs) if inputs is not None else groups
        inputs = None
    if outputs is not None:
        weight = weight[outputs]
        bias = bias[outputs] if bias is not None else None
    if inputs is not None:
        weight = weight[:, inputs]
    if isinstance(layer, nn.Conv2d):
        new: nn.Module = nn.Conv2d(weight.shape[1] * groups, weight.shape[0], layer.kernel_size, layer.stride,
                                   layer.padding, layer.dilation, groups, bias is not None, layer.padding_mode)
    else:
        new = nn.Linear(weight.shape[1], weight.shape[0], bias is not None)
    new = new.to(device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        new.weight.copy_(weight)
        if bias is not None:
            new.bias.copy_(bias)
    return new


def _slice_batchnorm(bn: nn.Module, channels: list[int]) -> nn.Module:
    new = type(bn)(len(channels), bn.eps, bn.momentum, bn.affine, bn.track_running_stats)
    new = new.to(next(bn.buffers(), bn.weight).device)
    with torch.no_grad():
        if bn.affine:
            new.weight.copy_(bn.weight[channels])
            new.bias.copy_(bn.bias[channels])
        if bn.track_running_stats:
            new.running_mean.copy_(bn.running_mean[channels])
            new.running_var.copy_(bn.running_var[channels])
            new.num_batches_tracked.copy_(bn.num_batches_tracked)
    return new


def _replace(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, module)


@torch.no_grad()
def apply_plan(model: nn.Module, plan: SlimPlan) -> nn.Module:
    """Rebuild the plain ``model``'s layers and BatchNorms in place as the plan says; returns ``model``."""
    layers = dict(prunable_modules(model))
    for name in sorted(set(plan.inputs) | set(plan.outputs)):
        if name not in layers:
            raise HarpError(f"the slim plan names layer '{name}', which this model does not have")
        new = _slice_layer(layers[name], plan.inputs.get(name), plan.outputs.get(name))
        if name in plan.gathers:
            index = torch.tensor(expand_units(plan.inputs[name], layers[name]), device=new.weight.device)
            new = nn.Sequential(ChannelSelect(index), new)
        _replace(model, name, new.train(layers[name].training))
    for name, channels in plan.batchnorms.items():
        old = model.get_submodule(name)
        _replace(model, name, _slice_batchnorm(old, channels).train(old.training))
    return model


def slim_model(model: nn.Module, input_shape: Sequence[int]) -> tuple[nn.Module, SlimPlan]:
    """Turn a channel-masked model (in place) into a plain, physically smaller one with the same outputs."""
    keep = channel_keep(model)
    unwrap_model(model)
    plan = plan_slimming(model, keep, input_shape)
    return apply_plan(model, plan), plan


def save_slim(model: nn.Module, plan: SlimPlan, model_spec: dict[str, Any], path: str | Path) -> None:
    """A pickle-free slim checkpoint: the zoo spec, the plan and the state dict (``torch.load(weights_only=True)``)."""
    torch.save({"format": FORMAT, "model_spec": model_spec, "plan": plan.as_dict(),
                "model": model.state_dict()}, str(path))


def load_slim(path: str | Path, model: nn.Module | None = None) -> nn.Module:
    """Rebuild a slim model: the architecture (from the spec, or ``model``), the plan applied, the weights loaded."""
    from harp_prune.pipeline import build_from_spec

    data = torch.load(str(path), map_location="cpu", weights_only=True)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise HarpError(f"{path} is not a harp slim checkpoint; export one with 'harp export --format slim'")
    model = model if model is not None else build_from_spec(data["model_spec"])
    apply_plan(model, SlimPlan.from_dict(data["plan"]))
    model.load_state_dict(data["model"])
    return model.eval()
