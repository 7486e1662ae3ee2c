"""Kept weights counted from the tensors a forward pass reads (the non-zero entries of W * M), independently
of the pruner's own bookkeeping (``sparsity_report``, ``layer.kept()``), for the tests' budget checks."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize


@torch.no_grad()
def masked_weight_counts(model: nn.Module) -> dict[str, tuple[int, int]]:
    """``{"<module>.<parameter>": (non-zero entries of W * M, entries)}`` for every masked parameter, a tied
    parameter once (under its first holder)."""
    counts: dict[str, tuple[int, int]] = {}
    seen: set[int] = set()
    for module_name, module in model.named_modules():
        if not parametrize.is_parametrized(module):
            continue
        for name, parametrization in module.parametrizations.items():
            if id(parametrization.original) in seen:
                continue
            seen.add(id(parametrization.original))
            value = getattr(module, name)  # read through the mask, as a forward pass does
            counts[f"{module_name}.{name}"] = (int(torch.count_nonzero(value)), value.numel())
    return counts


def kept_and_total(model: nn.Module) -> tuple[int, int]:
    """Non-zero entries of W * M and entries, summed over every masked parameter."""
    counts = masked_weight_counts(model).values()
    return sum(kept for kept, _ in counts), sum(total for _, total in counts)


def budget_kept(total: int, sparsity: float) -> int:
    """The kept count a global budget allows: round((1 - sparsity) * total)."""
    return round((1.0 - sparsity) * total)

