"""After pruning, the realised global sparsity (counted from masks) is within 0.5% of the target."""

import pytest
import torch
from kept_counts import budget_kept, kept_and_total

from harp_prune.models import build_model
from harp_prune.pruning import HarpPruner, sparsity_report


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
