"""How a grouped or depthwise convolution's input channels map to mask units."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn


def conv_groups(layer: nn.Module) -> int:
    """The ``groups`` of a Conv2d (1 for a Linear)."""
    return int(getattr(layer, "groups", 1))


def is_depthwise(layer: nn.Module) -> bool:
    """A conv whose every input channel feeds only the output channel of the same index."""
    groups = conv_groups(layer)
    return groups > 1 and groups == layer.in_channels == layer.out_channels


def unit_blocks(layer: nn.Module) -> int:
    """How many input channels one mask unit stands for: the group count of a grouped (not depthwise) conv."""
    return 1 if is_depthwise(layer) else conv_groups(layer)


def expand_units(units: Sequence[int], layer: nn.Module) -> list[int]:
    """The input-channel indices of kept mask units: unit i of a grouped conv is position i of every group."""
    blocks = unit_blocks(layer)
    if blocks == 1:
        return list(units)
    per_group = layer.in_channels // blocks
    return [block * per_group + unit for block in range(blocks) for unit in units]
