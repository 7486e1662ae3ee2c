"""What channel pruning needs to know about a model's graph, found by tracing instead of hard-coding.

``trace_layers`` answers every question with two tracers:

* a forward pass on a dummy input with hooks on every Conv2d/Linear (masked or not) records each call's
  output size (for FLOPs; a module called twice costs twice) and which calls read the *same tensor*. Layers
  reading one tensor, and the tensors one layer reads (a module used twice), must share one input-channel
  mask: they form a tie group. This works for any model that runs, whatever its Python code does.
* a symbolic trace (torch.fx) finds, for each tensor a group reads (a *source*), the layer that produces it
  through channel-wise operations only (BatchNorm, ReLU, pooling, dropout). Where such a producer exists,
  is called once and nothing else reads the intermediate tensors, dropping input channel c of the group
  also drops output channel c of the producer and its BatchNorm entries. Residual additions, flattening
  into a Linear, concatenations and anything unknown break the link; the readers then select their kept
  channels with an index gather instead (correct, just less saving).

Depthwise convolutions (groups == in_channels == out_channels) tie their input and output channels: the
group a depthwise conv feeds through channel-wise ops is merged into the conv's own group, so one mask
removes channel c before, in and after it. Grouped convolutions rank positions within a group (one unit
prunes that position in every group, which keeps the groups equal) and are never producers. A group
that cannot be slimmed consistently (e.g. a depthwise conv whose output also feeds a residual sum) is
*frozen*: it keeps every channel, and ``frozen`` says why.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from harp_prune.errors import HarpError
from harp_prune.pruning.conv import is_depthwise, unit_blocks
from harp_prune.pruning.fx_links import producer_links
from harp_prune.pruning.masked import prunable_modules


@dataclass
class LayerTrace:
    """One prunable layer as seen in a traced forward pass."""

    name: str
    layer: nn.Module  # the plain Conv2d/Linear
    order: int  # execution order of its first call
    group: int  # index of its tie group
    out_spatial: int  # output positions per example and channel, summed over its calls
    calls: int = 1

    @property
    def pairs(self) -> int:
        """Connected (input channel, output channel) pairs: C_out * C_in / groups."""
        return self.layer.weight.shape[0] * self.layer.weight.shape[1]

    @property
    def macs_per_pair(self) -> int:
        """Multiply-accumulates per connected channel pair: k_h * k_w * output positions (all calls)."""
        return self.layer.weight[0, 0].numel() * self.out_spatial


@dataclass
class Source:
    """One tensor a tie group's layers read, and the layer whose output channels go with the group's mask."""

    readers: list[str]  # layers reading it
    producer: str | None = None  # None: the readers gather their kept channels from the full tensor
    batchnorms: list[str] = field(default_factory=list)  # between producer and readers, sliced with them


@dataclass
class ModelTrace:
    layers: dict[str, LayerTrace]
    groups: list[list[str]]  # tie groups in execution order of their first member
    sources: list[list[Source]]  # per group: the tensors its members read
    input_group: int  # the group reading the image (its channels are never pruned)
    frozen: dict[int, str] = field(default_factory=dict)  # groups that keep every channel, and why

    def gathers(self, name: str) -> bool:
        """Whether layer ``name`` selects its kept input channels from a full-width tensor."""
        return any(source.producer is None for source in self.sources[self.layers[name].group]
                   if name in source.readers)

    def produced(self) -> dict[str, int]:
        """{producer: the group its output channels follow} for producers that are not depthwise."""
        return {source.producer: index for index, sources in enumerate(self.sources) for source in sources
                if source.producer is not None and not is_depthwise(self.layers[source.producer].layer)}


class _Ties:
    """Union-find over layers and tensors: what must share one channel mask."""

    def __init__(self) -> None:
        self.parent: dict[Hashable, Hashable] = {}

    def find(self, key: Hashable) -> Hashable:
        self.parent.setdefault(key, key)
        while self.parent[key] != key:
            self.parent[key] = self.parent[self.parent[key]]
            key = self.parent[key]
        return key

    def union(self, a: Hashable, b: Hashable) -> None:
        self.parent[self.find(a)] = self.find(b)


@torch.no_grad()
def _record_calls(model: nn.Module, input_shape: Sequence[int],
                  every_layer: bool = True) -> tuple[dict[str, nn.Module], list[tuple]]:
    """(plain layers by name, [(name, input tensor, output tensor)] in execution order) of one dummy pass.

    ``every_layer=False`` leaves out the layers that did not run as modules (e.g. a Linear that attention
    reads directly) instead of refusing the model."""
    prunable = dict(prunable_modules(model))
    if not prunable:
        raise HarpError("the model has no Conv2d or Linear layer to prune")
    hooked = {name: module for name, module in model.named_modules() if name in prunable}
    calls: list[tuple[str, torch.Tensor, torch.Tensor]] = []  # keeps the tensors alive, so ids stay unique

    def hook(name: str):
        def record(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            calls.append((name, inputs[0], output))
        return record

    handles = [module.register_forward_hook(hook(name)) for name, module in hooked.items()]
    was_training = model.training
    try:
        model.eval()
        parameter = next(model.parameters())
        model(torch.zeros(1, *input_shape, dtype=parameter.dtype, device=parameter.device))
    except Exception as exc:  # any failure means the shape is wrong for this model
        raise HarpError(f"could not trace the model on an input of shape {tuple(input_shape)}: {exc}; "
                        "give the (C, H, W) the model was built for") from exc
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    ran = {name for name, _, _ in calls}
    missing = set(prunable) - ran
    if missing and every_layer:
        raise HarpError(f"layers {sorted(missing)} did not run on the dummy input; remove or exclude them")
    return {name: layer for name, layer in prunable.items() if name in ran}, calls


def trace_layers(model: nn.Module, input_shape: Sequence[int], every_layer: bool = True) -> ModelTrace:
    """Tie groups, their sources and producers, and layer output sizes of ``model`` on (1, *input_shape).

    ``every_layer=False``: layers that do not run as modules are left out of the trace (see ``_record_calls``)."""
    prunable, calls = _record_calls(model, input_shape, every_layer)
    ties = _Ties()
    tensor_of_call = []
    for name, x, _ in calls:
        ties.union(("layer", name), ("tensor", id(x)))
        tensor_of_call.append(id(x))
    links = producer_links(model, prunable, [name for name, _, _ in calls], tensor_of_call)
    for tensor, (producer, _) in links.items():
        if is_depthwise(prunable[producer]):  # its output channels are its input channels
            ties.union(("layer", producer), ("tensor", tensor))

    first_call: dict[str, int] = {}
    spatial: Counter[str] = Counter()
    for order, (name, _, y) in enumerate(calls):
        first_call.setdefault(name, order)
        spatial[name] += int(y[0, 0].numel() if y.dim() > 2 else 1)
    roots: dict[Hashable, int] = {}
    groups: list[list[str]] = []
    for name in sorted(first_call, key=first_call.__getitem__):
        index = roots.setdefault(ties.find(("layer", name)), len(groups))
        if index == len(groups):
            groups.append([])
        groups[index].append(name)
    call_counts = Counter(name for name, _, _ in calls)
    layers = {name: LayerTrace(name, prunable[name], first_call[name], roots[ties.find(("layer", name))],
                               spatial[name], call_counts[name]) for name in first_call}

    sources: list[list[Source]] = [[] for _ in groups]
    readers: dict[int, list[str]] = {}
    for (name, _, _), tensor in zip(calls, tensor_of_call, strict=True):
        if name not in readers.setdefault(tensor, []):
            readers[tensor].append(name)
    for tensor, names in readers.items():
        producer, batchnorms = links.get(tensor, (None, []))
        sources[layers[names[0]].group].append(Source(names, producer, batchnorms))
    trace = ModelTrace(layers, groups, sources, input_group=layers[calls[0][0]].group)
    _settle(trace)
    return trace


def _settle(trace: ModelTrace) -> None:
    """Freeze the groups that cannot be slimmed, and unlink sources whose readers must gather anyway."""
    for index, members in enumerate(trace.groups):
        widths = {trace.layers[m].layer.weight.shape[0 if is_depthwise(trace.layers[m].layer) else 1]
                  for m in members}
        blocks = {unit_blocks(trace.layers[m].layer) for m in members}
        if len(widths) > 1 or len(blocks) > 1:
            trace.frozen[index] = (f"layers {members} must share one channel mask but rank different units "
                                   "(e.g. a grouped conv beside a plain one)")
    depthwise_producers = {s.producer for sources in trace.sources for s in sources if s.producer is not None}
    for name, layer in trace.layers.items():
        if is_depthwise(layer.layer) and name not in depthwise_producers:
            trace.frozen.setdefault(layer.group, f"depthwise conv '{name}' feeds something other than one group "
                                                 "of layers through channel-wise ops, so its channels stay")
    changed = True
    while changed:  # a layer gathering from one source gathers from all: those must stay full width
        changed = False
        for index, sources in enumerate(trace.sources):
            for source in sources:
                if source.producer is None or not any(trace.gathers(r) for r in source.readers):
                    continue
                if is_depthwise(trace.layers[source.producer].layer):  # its output cannot stay full width
                    trace.frozen.setdefault(index, f"depthwise conv '{source.producer}' feeds a layer that "
                                                   "also reads a tensor it must gather from")
                source.producer, source.batchnorms = None, []
                changed = True
