"""Which layer produces the tensor a tie group reads, through channel-wise operations only (a torch.fx trace):
where one does, the group's input channels can be removed together with that producer's output channels
(``graph.py`` explains the whole trace)."""

from __future__ import annotations

from collections import Counter

import torch
import torch.nn.functional as F
from torch import fx, nn

from harp_prune.pruning.conv import conv_groups, is_depthwise
from harp_prune.pruning.masked import PRUNABLE_TYPES

CHANNELWISE_MODULES: tuple[type[nn.Module], ...] = (
    nn.BatchNorm1d, nn.BatchNorm2d, nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh,
    nn.Hardswish, nn.ELU, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d,
    nn.Dropout, nn.Dropout2d, nn.Identity,
)
CHANNELWISE_FUNCTIONS = {F.relu, F.relu6, F.leaky_relu, F.gelu, F.silu, torch.relu, torch.sigmoid, torch.tanh,
                         F.max_pool2d, F.avg_pool2d, F.adaptive_avg_pool2d, F.adaptive_max_pool2d, F.dropout}
CHANNELWISE_METHODS = {"relu", "relu_", "sigmoid", "tanh", "contiguous", "clone"}


class _LeafTracer(fx.Tracer):
    """Keeps every Conv2d/Linear opaque, masked ones too (their parametrized class is made at run time)."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, PRUNABLE_TYPES) or super().is_leaf_module(m, qualname)


def _is_channelwise(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    if node.op == "call_module":
        return isinstance(modules.get(node.target), CHANNELWISE_MODULES)  # type: ignore[arg-type]
    if node.op == "call_function":
        return node.target in CHANNELWISE_FUNCTIONS
    if node.op == "call_method":
        return node.target in CHANNELWISE_METHODS
    return False


def _has_state(module: nn.Module) -> bool:
    """Whether the module holds parameters or buffers, which slimming would slice (a BatchNorm; not a ReLU)."""
    return next(module.parameters(), None) is not None or next(module.buffers(), None) is not None


def producer_links(model: nn.Module, prunable: dict[str, nn.Module], call_names: list[str],
           call_tensors: list[int]) -> dict[int, tuple[str, list[str]]]:
    """{input tensor id: (producer, BatchNorms in between)} for the tensors whose channels can go with a producer.

    A tensor is linked when it comes from exactly one Conv2d/Linear of the same kind as its readers, called
    once and not a grouped conv, through channel-wise ops only, each module on the path that holds per-channel
    state (a BatchNorm) called once (a stateless one such as torchvision's shared ``self.relu`` may be reused), and
    every tensor on that path is read by nothing but the next op on the path (the last one: by the
    prunable layers only). The fx calls are matched to the hooked calls by order; returns {} when the model
    cannot be traced symbolically or the two traces disagree.
    """
    modules = dict(model.named_modules())
    try:
        graph = _LeafTracer().trace(model)
    except Exception:  # dynamic control flow etc.: fall back to gathers everywhere
        return {}
    module_calls = Counter(str(n.target) for n in graph.nodes if n.op == "call_module")
    layer_nodes = [n for n in graph.nodes if n.op == "call_module" and n.target in prunable]
    if [n.target for n in layer_nodes] != call_names:
        return {}
    readers_of: dict[fx.Node, set[fx.Node]] = {}
    tensor_of: dict[fx.Node, int] = {}
    for node, tensor in zip(layer_nodes, call_tensors, strict=True):
        source = node.args[0] if node.args else None
        if not isinstance(source, fx.Node) or tensor_of.setdefault(source, tensor) != tensor:
            return {}
        readers_of.setdefault(source, set()).add(node)
    links: dict[int, tuple[str, list[str]]] = {}
    for source, readers in readers_of.items():
        allowed, current, batchnorms = set(readers), source, []
        while current.target not in prunable or current.op != "call_module":
            if set(current.users) - allowed or not _is_channelwise(current, modules):
                break
            if current.op == "call_module":
                if module_calls[str(current.target)] > 1 and _has_state(modules[current.target]):  # type: ignore[index]
                    break  # slicing it would change its other uses too
                if isinstance(modules[current.target], nn.BatchNorm1d | nn.BatchNorm2d):  # type: ignore[index]
                    batchnorms.append(str(current.target))
            allowed = {current}
            if not current.args or not isinstance(current.args[0], fx.Node):
                break
            current = current.args[0]
        else:
            producer = prunable[str(current.target)]
            kinds = {isinstance(prunable[str(r.target)], nn.Conv2d) for r in readers}
            if (not set(current.users) - allowed and module_calls[str(current.target)] == 1
                    and kinds == {isinstance(producer, nn.Conv2d)}
                    and (conv_groups(producer) == 1 or is_depthwise(producer))):
                links[tensor_of[source]] = (str(current.target), batchnorms)
    return links
