"""The zeroed export: a plain state dict of the unwrapped model, pruned weights set to zero.

Each layer is zeroed by its own learned mask (``unwrap_model``), not by one uniform k as the official
``subnet_to_dense`` does, so the file really is the pruned model. It loads into the bare architecture
with ``model.load_state_dict(torch.load(path, weights_only=True))``: no harp code needed.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from harp_prune.pruning.masked import unwrap_model


def zeroed_model(model: nn.Module) -> nn.Module:
    """A plain copy of ``model`` (masked layers unwrapped, pruned weights zero); ``model`` is untouched."""
    return unwrap_model(copy.deepcopy(model)).eval()


def zeroed_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in zeroed_model(model).state_dict().items()}
