"""finalize() never leaves the integer channel widths over the budget, checked on the slimmed model's own FLOPs."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from harp_prune.errors import HarpError
from harp_prune.evaluation import budget_line, comparison_table
from harp_prune.export import slim_model
from harp_prune.models import build_model
from harp_prune.pruning import build_pruner, masked_layers, sparsity_report

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
    pruner = build_pruner("harp-channel", 0.5, input_shape=shape, channel_target=target)
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


def test_budget_report_gives_the_targets_own_quantity_counted_independently():
    shape = (1, 28, 28)
    torch.manual_seed(0)
    model = build_model("small_cnn", shape, 10, [0.5], [0.25])
    dense = counted_cost(model, shape)
    pruner = build_pruner("harp-channel", 0.75, input_shape=shape, channel_target="flops")
    pruner.attach(model)
    pruner.finalize()
    report = pruner.budget_report()
    slimmed = realised_by_slimming(model, shape, dense)
    assert report["quantity"] == "flops" and report["sparsity_of"] == "flops"
    assert report["target"] == pytest.approx(0.25)
    assert report["realised"] == pytest.approx(slimmed["flops"]) and report["realised"] <= 0.25
    assert report["params"] == pytest.approx(slimmed["params"])
    assert report["weights"] == pytest.approx(sparsity_report(model).density)
    kept = [int(layer.mask().sum()) for layer in masked_layers(model).values()]
    assert report["channels"] == pytest.approx(sum(kept[1:]) / (16 + 1568 + 100))  # the image group is not pruned
    line = budget_line(report)
    assert f"flops kept {slimmed['flops']:.5f} of dense (budget 0.25000)" in line
    assert f"weight sparsity {sparsity_report(model).sparsity:.5f}" in line
    table = comparison_table({"pruned": {"natural_acc": 0.5, "robust_acc": {}, "sparsity": 0.1, "kept_weights": 9,
                                         "prunable_weights": 10, "budget": report}})
    assert f"flops {100 * slimmed['flops']:.2f} / 25.00" in table


def test_unstructured_budget_report_is_the_weight_density():
    model = build_model("small_cnn", (1, 28, 28), 10, [0.5], [0.25])
    pruner = build_pruner("harp", 0.9)
    pruner.attach(model)
    pruner.finalize()
    report = pruner.budget_report()
    assert report["quantity"] == "weights" and report["target"] == pytest.approx(0.1)
    assert report["realised"] == report["weights"] == pytest.approx(sparsity_report(model).density)
    assert budget_line(report).startswith(f"weights kept {report['realised']:.5f} of dense (budget 0.10000)")


def test_a_budget_below_the_floors_is_refused_and_the_rates_left_alone():
    model = build_model("small_cnn", (1, 28, 28), 10, [0.5], [0.25])
    pruner = build_pruner("harp-channel", 0.999, input_shape=(1, 28, 28), channel_target="flops")
    pruner.attach(model)  # the unprunable image conv alone, with one filter left, costs more than 0.1%
    learned = [float(layer.rate.detach()) for layer in pruner.group_layers]
    refusal = r"cannot meet its flops budget of 0\.0010 .*lower prune\.alpha or the sparsity"
    with pytest.raises(HarpError, match=refusal):
        pruner.finalize()
    assert [float(layer.rate.detach()) for layer in pruner.group_layers] == learned
