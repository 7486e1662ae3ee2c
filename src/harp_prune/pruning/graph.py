"""What channel pruning needs to know about a model's graph, found by tracing instead of hard-coding.

Two tracers, one per question:

* ``trace_layers`` runs one forward pass on a dummy input with forward hooks on every Conv2d/Linear
  (masked or not). It records each layer's output spatial size (for FLOPs) and which layers read the
  *same input tensor* (tie groups: they must share one input-channel mask, e.g. a ResNet block's first
  conv and its 1x1 shortcut). This works for any model that runs, whatever its Python code does.
* ``channel_links`` traces the graph symbolically (torch.fx) to find, for each tie group, the layer that
  *produces* its input through channel-wise operations only (BatchNorm, ReLU, pooling, dropout). Where
  such a producer exists and nothing else reads the intermediate tensors, dropping input channel c of
  the group also drops output channel c of the producer and its BatchNorm entries. Residual additions,
  flattening into a Linear, concatenations and anything unknown break the link; the consumers then
  select their kept channels with an index gather instead (correct, just less saving).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import fx, nn

from harp_prune.errors import HarpError
from harp_prune.pruning.masked import PRUNABLE_TYPES, prunable_modules


@dataclass
class LayerTrace:
    """One prunable layer as seen in a traced forward pass."""

    name: str
    layer: nn.Module  # the plain Conv2d/Linear
    order: int  # execution order
    group: int  # index of the tie group (layers reading the same input tensor)
    out_spatial: int  # H_out * W_out for convs; the product of the non-feature dims per example for linears

    @property
    def in_channels(self) -> int:
        return self.layer.weight.shape[1]

    @property
    def out_channels(self) -> int:
        return self.layer.weight.shape[0]

    @property
    def macs_per_pair(self) -> int:
        """Multiply-accumulates per (input channel, output channel) pair: k_h * k_w * output positions."""
        kernel = self.layer.weight[0, 0].numel()
        return kernel * self.out_spatial


@dataclass
class ModelTrace:
    layers: dict[str, LayerTrace]
    groups: list[list[str]]  # tie groups in execution order of their first member
    input_group: int  # the group reading the image (its channels are never pruned)


@torch.no_grad()
def trace_layers(model: nn.Module, input_shape: Sequence[int]) -> ModelTrace:
    """Run ``model`` once on zeros of shape (1, *input_shape) with hooks on every Conv2d/Linear."""
    prunable = dict(prunable_modules(model))
    if not prunable:
        raise HarpError("the model has no Conv2d or Linear layer to prune")
    hooked = {name: module for name, module in model.named_modules() if name in prunable}
    records: list[tuple[str, torch.Tensor, torch.Tensor]] = []  # keeps the tensors alive, so ids stay unique

    def hook(name: str):
        def record(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            records.append((name, inputs[0], output))
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
    group_of_input: dict[int, int] = {}
    groups: list[list[str]] = []
    layers: dict[str, LayerTrace] = {}
    for order, (name, x, y) in enumerate(records):
        if name in layers:
            raise HarpError(f"layer '{name}' runs twice in one forward pass; channel pruning needs each "
                            "Conv2d/Linear used once (share weights explicitly or exclude it)")
        group = group_of_input.setdefault(id(x), len(groups))
        if group == len(groups):
            groups.append([])
        groups[group].append(name)
        layers[name] = LayerTrace(name, prunable[name], order, group, int(y[0, 0].numel() if y.dim() > 2 else 1))
    missing = set(prunable) - set(layers)
    if missing:
        raise HarpError(f"layers {sorted(missing)} did not run on the dummy input; remove or exclude them")
    return ModelTrace(layers, groups, input_group=0)


# ---------------------------------------------------------------------------------------------- fx links

CHANNELWISE_MODULES: tuple[type[nn.Module], ...] = (
    nn.BatchNorm1d, nn.BatchNorm2d, nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh,
    nn.Hardswish, nn.ELU, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d,
    nn.Dropout, nn.Dropout2d, nn.Identity,
)
CHANNELWISE_FUNCTIONS = {F.relu, F.relu6, F.leaky_relu, F.gelu, F.silu, torch.relu, torch.sigmoid, torch.tanh,
                         F.max_pool2d, F.avg_pool2d, F.adaptive_avg_pool2d, F.adaptive_max_pool2d, F.dropout}
CHANNELWISE_METHODS = {"relu", "relu_", "sigmoid", "tanh", "contiguous", "clone"}


@dataclass
class ChannelLink:
    """The producer of a tie group's input, and the BatchNorms in between (by module name)."""

    producer: str
    batchnorms: list[str] = field(default_factory=list)


class _LeafTracer(fx.Tracer):
    """Keeps every Conv2d/Linear opaque, masked ones too (their parametrized class is made at run time)."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, PRUNABLE_TYPES) or super().is_leaf_module(m, qualname)


def _module_name(node: fx.Node, modules: dict[str, nn.Module]) -> str | None:
    return node.target if node.op == "call_module" and node.target in modules else None  # type: ignore[return-value]


def _is_channelwise(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    if node.op == "call_module":
        return isinstance(modules.get(node.target), CHANNELWISE_MODULES)  # type: ignore[arg-type]
    if node.op == "call_function":
        return node.target in CHANNELWISE_FUNCTIONS
    if node.op == "call_method":
        return node.target in CHANNELWISE_METHODS
    return False


def _is_prunable(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    return node.op == "call_module" and isinstance(modules.get(node.target), PRUNABLE_TYPES)  # type: ignore[arg-type]


def channel_links(model: nn.Module, groups: list[list[str]]) -> dict[int, ChannelLink]:
    """For each tie group index, the producer whose output channels can be dropped with the group's inputs.

    A group is linked when its members' input comes from exactly one Conv2d/Linear through channel-wise ops
    only, every tensor on that path is read by nothing but the next op on the path (the last one: by the
    group's members only), and the producer's output has the channel axis the group prunes (a Linear
    after a flatten does not). Returns {} when the model cannot be traced symbolically.
    """
    modules = dict(model.named_modules())
    try:
        graph = _LeafTracer().trace(model)
    except Exception:  # dynamic control flow etc.: fall back to gathers everywhere
        return {}
    node_of = {n.target: n for n in graph.nodes if n.op == "call_module"}
    links: dict[int, ChannelLink] = {}
    for index, members in enumerate(groups):
        nodes = [node_of.get(name) for name in members]
        if any(n is None for n in nodes):
            continue
        source = nodes[0].args[0]  # type: ignore[union-attr]
        if not isinstance(source, fx.Node) or any(n.args[0] is not source for n in nodes):  # type: ignore[union-attr]
            continue
        allowed_users = set(nodes)
        batchnorms: list[str] = []
        current = source
        linked = True
        while not _is_prunable(current, modules):
            if not _is_channelwise(current, modules) or set(current.users) - allowed_users:
                linked = False
                break
            name = _module_name(current, modules)
            if name is not None and isinstance(modules[name], (nn.BatchNorm1d, nn.BatchNorm2d)):
                batchnorms.append(name)
            allowed_users = {current}
            if not current.args or not isinstance(current.args[0], fx.Node):
                linked = False
                break
            current = current.args[0]
        if not linked or set(current.users) - allowed_users:
            continue
        producer = current.target
        if producer in members:  # a layer feeding itself cannot happen in a DAG; be safe
            continue
        links[index] = ChannelLink(str(producer), batchnorms)
    return links
