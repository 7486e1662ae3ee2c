"""After pruning, the realised global sparsity (counted from masks) is within 0.5% of the target."""

import pytest
import torch
from kept_counts import budget_kept, kept_and_total

from harp_prune.models import build_model
from harp_prune.pruning import HarpPruner, budget, build_pruner, project_to_budget, sparsity_report


@pytest.mark.parametrize("sparsity", [0.9, 0.99, 0.999])
def test_projection_meets_target_from_any_learned_rates(sparsity):
    torch.manual_seed(0)
    model = build_model("resnet18_w16", (3, 32, 32), 10, [0.5] * 3, [0.25] * 3)
    pruner = HarpPruner(sparsity)
    pruner.attach(model)
    with torch.no_grad():  # pretend learning left the rates scattered and off budget
        for layer in pruner.layers:
            layer.rate.add_(torch.randn(()) * 2)
    order_before = sorted(range(len(pruner.layers)), key=lambda i: float(pruner.layers[i].rate.detach()))
    pruner.finalize()
    kept, total = kept_and_total(model)
    assert total == sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Conv2d | torch.nn.Linear))
    assert kept == budget_kept(total, sparsity)  # 21 layers: the common shift lands on the exact count
    assert sparsity_report(model).kept == kept
    order_after = sorted(range(len(pruner.layers)), key=lambda i: float(pruner.layers[i].rate.detach()))
    assert order_before == order_after  # a common shift keeps the learned ranking of layers


def test_report_counts_real_masks_per_layer():
    model = build_model("small_cnn", (1, 28, 28), 10, [0.5], [0.25])
    pruner = HarpPruner(0.99)
    pruner.attach(model)
    report = sparsity_report(model)
    assert report.total == sum(layer.numel for layer in pruner.layers)
    assert [layer.kept for layer in report.layers] == [int(layer.mask().sum()) for layer in pruner.layers]
    assert report.density == pytest.approx(0.1, rel=0.01)  # the uniform 10% start


def _scattered_pruner(seed: int, sparsity: float = 0.99, method: str = "harp"):
    """resnet18_w16's 21 layers with rates scattered off budget, as learning leaves them."""
    torch.manual_seed(seed)
    model = build_model("resnet18_w16", (3, 32, 32), 10, [0.5] * 3, [0.25] * 3)
    pruner = build_pruner(method, sparsity, input_shape=(3, 32, 32))
    pruner.attach(model)
    with torch.no_grad():
        for layer in pruner.layers:
            layer.rate.add_(torch.randn(()) * 3)
    return pruner


@pytest.mark.parametrize("method", ["harp", "frontier"])
@pytest.mark.parametrize("sparsity", [0.9, 0.99, 0.999])
def test_projection_on_a_host_copy_of_the_rates_is_the_same_projection(sparsity, method):
    # the GPU path (one read of the rates, the bisection on the host) forced on the CPU: the same δ and rates
    for seed in range(3):
        on_device, on_host = _scattered_pruner(seed, sparsity, method), _scattered_pruner(seed, sparsity, method)
        shift = project_to_budget(on_device.layers, 1 - sparsity, on_host=False)
        assert project_to_budget(on_host.layers, 1 - sparsity, on_host=True) == shift
        assert [layer.rate.item() for layer in on_host.layers] == [layer.rate.item() for layer in on_device.layers]
        # its one-read count of the kept weights, against the masks themselves
        assert budget.masks_kept(on_host.layers) == sum(int(layer.mask().sum()) for layer in on_host.layers)


def test_projection_falls_back_to_the_masks_count_when_the_host_copy_disagrees(monkeypatch):
    exact = _scattered_pruner(0)
    shift = project_to_budget(exact.layers, 0.01, on_host=False)
    counted = budget.kept_at_offset

    def host_off_by_far(layers, offset, rates=None):  # a host whose keep-ratios are far off the device's
        return counted(layers, offset + (2.0 if rates is not None else 0.0), rates)

    monkeypatch.setattr(budget, "kept_at_offset", host_off_by_far)
    pruner = _scattered_pruner(0)
    assert project_to_budget(pruner.layers, 0.01, on_host=True) == shift
    assert [layer.rate.item() for layer in pruner.layers] == [layer.rate.item() for layer in exact.layers]
