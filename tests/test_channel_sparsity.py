"""Channel sparsity is counted from the weights the masks really zero, not from the number of scores."""

from __future__ import annotations

import copy

import torch

from harp_prune.models import build_model
from harp_prune.pruning import build_pruner, masked_layers, sparsity_report, unwrap_model


def test_report_counts_the_zeroed_weights_of_channel_masks():
    torch.manual_seed(0)
    model = build_model("resnet18_w16", (3, 32, 32), 10, [0.5] * 3, [0.25] * 3)
    pruner = build_pruner("harp-channel", 0.6, input_shape=(3, 32, 32))
    pruner.attach(model)
    with torch.no_grad():
        for layer in pruner.group_layers:
            layer.scores.normal_()
    pruner.finalize()
    report = sparsity_report(model)
    plain = unwrap_model(copy.deepcopy(model))
    zeros = sparsity_report(plain)  # a plain model is counted from its non-zero weights
    assert report.kept == zeros.kept and report.total == zeros.total
    for masked, counted in zip(report.layers, zeros.layers, strict=True):
        assert masked.kept == counted.kept
    layer = masked_layers(model)["net.layer2.1.conv2"]
    per_channel = layer.weight[:, 0].numel()
    assert report.layers[[x.name for x in report.layers].index("net.layer2.1.conv2")].kept == \
        layer.kept_units() * per_channel == layer.kept()
    assert 0.3 < report.sparsity < 0.75  # channels at ~60%, the stem and tied layers less
