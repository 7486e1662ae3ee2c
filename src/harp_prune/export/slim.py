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
from harp_prune.export.csr import READS_CHILD_WEIGHTS
from harp_prune.pruning.channel import ChannelMaskedLayer
from harp_prune.pruning.conv import conv_groups, expand_units, is_depthwise
from harp_prune.pruning.graph import trace_layers
from harp_prune.pruning.masked import PRUNABLE_TYPES, find_sites, mask_sites, prunable_modules, unwrap_model
from harp_prune.training import build_from_spec, load_verified

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


def channel_keep(model: nn.Module) -> tuple[dict[str, list[int]], bool, set[str]]:
    """Kept input units of every masked layer that drops some, whether the masks are channel masks, and the
    layers that must stay as they are (inputs and outputs).

    A channel mask keeps whole input channels. Of a weight (unstructured) mask, an input channel of a plain
    (groups=1) Conv2d/Linear is kept when any of its weights is; layers inside modules that read their
    children's weights directly (attention, fused transformer layers) and tied weights keep all, and their
    output channels stay too.
    """
    masks = mask_sites(model)
    channel = any(isinstance(site.mask, ChannelMaskedLayer) for site in masks.values())
    keep: dict[str, list[int]] = {}
    # a weight held by several layers: slicing one holder would untie it (and grow the model)
    fixed = {owner_name for site in find_sites(model)[0].values() if len({id(o) for _, o, _ in site.owners}) > 1
             for owner_name, _, _ in site.owners}
    for name, site in masks.items():
        mask = site.mask
        assert mask is not None
        if channel:
            kept = torch.nonzero(mask.mask()).flatten().tolist()
            if len(kept) < mask.units:
                keep[name] = kept
            continue
        module_name, module, attribute = site.owners[0]
        parent = model.get_submodule(module_name.rpartition(".")[0]) if "." in module_name else model
        if (attribute != "weight" or not isinstance(module, PRUNABLE_TYPES) or conv_groups(module) != 1
                or isinstance(parent, READS_CHILD_WEIGHTS) or module_name in fixed):
            fixed.update(owner_name for owner_name, _, _ in site.owners)
            continue
        weight = mask.masked_weight()
        used = weight.abs().sum(dim=[d for d in range(weight.dim()) if d != 1]) > 0
        if not bool(used.all()):
            keep[name] = torch.nonzero(used).flatten().tolist()
    return keep, channel, fixed


def plan_slimming(model: nn.Module, keep: dict[str, list[int]], input_shape: Sequence[int],
                  tied: bool = True, fixed: frozenset[str] | set[str] = frozenset()) -> SlimPlan:
    """Decide, by tracing the plain ``model``, what each layer and BatchNorm keeps.

    ``tied``: the kept units come from channel masks, which layers reading one tensor share. Otherwise (weight
    masks) a group drops the channels that none of its readers uses, and groups that cannot are left whole.
    A producer in ``fixed`` (a layer that must keep its shape) keeps its outputs; its readers gather.
    """
    trace = trace_layers(model, input_shape, every_layer=tied)
    plan = SlimPlan()
    for index, members in enumerate(trace.groups):
        if not tied:
            if index in trace.frozen or any(m not in keep for m in members):
                continue  # a reader uses every channel, or is not a plain layer: nothing can go
            union = set().union(*(keep[m] for m in members))
            keep.update({m: sorted(union) for m in members})
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
        kept_whole = [source for source in trace.sources[index] if source.producer in fixed]
        for member in members:
            plan.inputs[member] = units
            if trace.gathers(member) or any(member in source.readers for source in kept_whole):
                plan.gathers.append(member)
        for source in trace.sources[index]:
            if source.producer is None or source.producer in fixed:  # a fixed producer keeps its outputs
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
    """Put ``module`` wherever the module called ``name`` is registered (a module may sit under two names)."""
    old = model.get_submodule(name)
    for other, candidate in list(model.named_modules(remove_duplicate=False)):
        if candidate is old and other:
            parent_name, _, child = other.rpartition(".")
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
    """Turn a pruned model into a plain, physically smaller one with the same outputs: channel masks remove their
    channels; weight masks remove the input channels no kept weight reads.

    **In place**: the model given loses its masks and its layers are replaced by slimmed ones; the model
    returned *is* that object. Pass ``copy.deepcopy(model)`` to keep the masked model (``export_model`` does).

    :param model: a pruned model (masks attached, as pruning or ``load_model`` leaves it).
    :param input_shape: (C, H, W) of one input, to trace which layers read which tensors.
    :returns: ``(model, plan)``: the slimmed model and the kept indices (``SlimPlan``, what ``save_slim`` stores).

    Example::

        slim, plan = hp.slim_model(copy.deepcopy(pruned), (3, 32, 32))
    """
    keep, channel, fixed = channel_keep(model)
    unwrap_model(model)
    plan = plan_slimming(model, keep, input_shape, tied=channel, fixed=fixed)
    return apply_plan(model, plan), plan


def save_slim(model: nn.Module, plan: SlimPlan, model_spec: dict[str, Any], path: str | Path) -> None:
    """A pickle-free slim checkpoint: the zoo spec, the plan and the state dict (``torch.load(weights_only=True)``)."""
    torch.save({"format": FORMAT, "model_spec": model_spec, "plan": plan.as_dict(),
                "model": model.state_dict()}, str(path))


def load_slim(path: str | Path, model: nn.Module | None = None) -> nn.Module:
    """Rebuild a slim model: the architecture (from the spec, or ``model``), the plan applied, the weights loaded."""
    data = load_verified(Path(path), "slim checkpoint", "export it again with 'harp export --format slim'")
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise HarpError(f"{path} is not a harp slim checkpoint; export one with 'harp export --format slim'")
    model = model if model is not None else build_from_spec(data["model_spec"])
    apply_plan(model, SlimPlan.from_dict(data["plan"]))
    model.load_state_dict(data["model"])
    return model.eval()
