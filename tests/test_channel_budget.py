"""finalize() never leaves the integer channel widths over the budget, checked on the slimmed model's own FLOPs."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from harp_prune.export import slim_model
from harp_prune.models import build_model
from harp_prune.pruning import build_pruner

TRIALS = 24


def counted_cost(model: nn.Module, shape: tuple[int, ...]) -> dict[str, int]:
    """FLOPs (2 per MAC, per call) and weights of every Conv2d/Linear, counted by hooks on a forward pass."""
    flops = 0

    def count(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        nonlocal flops
        per_output = module.weight[0].numel()  # (C_in / groups) * k_h * k_w inputs feed one output value
        flops += 2 * per_output * output[0].numel()

    layers = [m for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    handles = [layer.register_forward_hook(count) for layer in layers]
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, *shape))
    finally:
        for handle in handles:
            handle.remove()
    return {"flops": flops, "params": sum(layer.weight.numel() for layer in layers)}


def realised_by_slimming(model: nn.Module, shape: tuple[int, ...], dense: dict[str, int]) -> dict[str, float]:
    """The kept FLOPs and parameter fractions of the physically slimmed model, independent of the pruner's count."""
    slim, _ = slim_model(copy.deepcopy(model), shape)
    kept = counted_cost(slim, shape)
    return {kind: kept[kind] / dense[kind] for kind in dense}


@pytest.mark.parametrize("name, shape, target", [
    ("small_cnn", (1, 28, 28), "channels"), ("small_cnn", (1, 28, 28), "flops"),
    ("resnet18_w16", (3, 8, 8), "channels"), ("resnet18_w16", (3, 8, 8), "params"),
])
def test_random_rates_end_within_the_budget(name, shape, target):
    generator = torch.Generator().manual_seed(0)
    model = build_model(name, shape, 10, [0.5] * shape[0], [0.25] * shape[0])
    dense = counted_cost(model, shape)
    pruner = build_pruner("harp-channel", 0.5, input_shape=shape, target=target)
    pruner.attach(model)
    initial = copy.deepcopy(model.state_dict())
    kind = pruner.kind
    for _ in range(TRIALS):
        model.load_state_dict(initial)
        sparsity = float(torch.empty(1).uniform_(0.3, 0.9, generator=generator))
        pruner.budget = pruner.cost.dense(kind) * (1.0 - sparsity)
        with torch.no_grad():
            for layer in pruner.group_layers:
                layer.rate.uniform_(-4.0, 4.0, generator=generator)
                layer.scores.normal_(generator=generator)
        pruner.finalize()
        budget = pruner.budget / pruner.cost.dense(kind)
        realised = realised_by_slimming(model, shape, dense)[kind]
        assert realised <= budget * (1 + 1e-9), f"sparsity {sparsity:.3f}: realised {realised:.5f} > {budget:.5f}"
        assert realised > budget - 0.15  # the shift is the largest that fits, not an arbitrary one
