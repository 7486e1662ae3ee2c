"""Slimmed models (channels physically removed) give the masked model's outputs, for the zoo architectures."""

from __future__ import annotations

import copy

import pytest
import torch

from harp_prune.errors import HarpError
from harp_prune.export import ChannelSelect, slim_model, zeroed_model
from harp_prune.export.slim import plan_slimming
from harp_prune.models import build_model
from harp_prune.pruning import build_pruner, masked_layers


def masked_channel_model(model: torch.nn.Module, shape: tuple[int, int, int], sparsity: float):
    """``model`` with random BatchNorm statistics and channel HARP's masks from random scores, projected onto
    ``sparsity``; also used by benchmarks/slim_backends.py."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):  # non-trivial BN, so slicing it wrongly would show
                module.running_mean.normal_()
                module.running_var.uniform_(0.5, 2.0)
                module.weight.normal_()
                module.bias.normal_()
    pruner = build_pruner("harp-channel", sparsity, input_shape=shape)
    pruner.attach(model)
    with torch.no_grad():
        for layer in pruner.group_layers:
            layer.scores.normal_()
    pruner.finalize()
    return model.eval(), pruner


def _masked(name: str, shape: tuple[int, int, int], sparsity: float):
    torch.manual_seed(0)
    return masked_channel_model(build_model(name, shape, 10, [0.5] * shape[0], [0.25] * shape[0]), shape, sparsity)


@pytest.mark.parametrize("name, shape, sparsity", [
    ("small_cnn", (1, 28, 28), 0.5), ("resnet18_w16", (3, 32, 32), 0.75), ("vgg16_bn", (3, 32, 32), 0.75),
])
def test_slim_equals_masked(name, shape, sparsity):
    model, pruner = _masked(name, shape, sparsity)
    x = torch.rand(4, *shape)
    with torch.no_grad():
        expected = model(x)
    dense_params = sum(p.numel() for n, p in model.named_parameters() if not n.endswith(("scores", "rate")))
    dense_weights = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Conv2d | torch.nn.Linear))
    slim, _ = slim_model(model, shape)
    assert not masked_layers(slim)
    with torch.no_grad():
        got = slim(x)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5 * expected.abs().max().item())
    slim_params = sum(p.numel() for p in slim.parameters())
    assert slim_params < 0.8 * dense_params
    # the realised parameter fraction the pruner reports is what slimming achieves
    slim_weights = sum(m.weight.numel() for m in slim.modules() if isinstance(m, torch.nn.Conv2d | torch.nn.Linear))
    assert pruner.realised()["params"] == pytest.approx(slim_weights / dense_weights, rel=1e-9)


def test_resnet_residual_inputs_are_gathered_and_block_inner_channels_removed():
    model, _ = _masked("resnet18_w16", (3, 32, 32), 0.75)
    slim, plan = slim_model(model, (3, 32, 32))
    # the conv1 -> bn1 -> relu -> conv2 path inside a block is slimmed for real
    gather, inner = slim.net.layer2[1].conv1  # its input is a residual sum: gathered
    assert isinstance(gather, ChannelSelect)
    assert inner.out_channels < 32 and slim.net.layer2[1].bn1.num_features == inner.out_channels
    assert slim.net.layer2[1].conv2.in_channels == inner.out_channels
    # block inputs are residual sums: the tied conv1 and shortcut gather the same kept channels
    conv1, shortcut = slim.net.layer3[0].conv1, slim.net.layer3[0].shortcut[0]
    assert isinstance(conv1[0], ChannelSelect) and isinstance(shortcut[0], ChannelSelect)
    assert torch.equal(conv1[0].index, shortcut[0].index)
    assert "net.layer3.0.conv1" in plan.gathers


def test_untied_masks_on_one_tensor_are_refused():
    model = build_model("resnet18_w16", (3, 32, 32), 10, [0.5] * 3, [0.25] * 3)
    keep = {"net.layer2.0.conv1": list(range(8)), "net.layer2.0.shortcut.0": list(range(1, 9))}
    with pytest.raises(HarpError, match="keep different channels"):
        plan_slimming(model, keep, (3, 32, 32))


def test_weight_masked_models_lose_the_input_channels_no_kept_weight_reads():
    torch.manual_seed(0)
    model = build_model("small_cnn", (1, 28, 28), 10, [0.5], [0.25])
    pruner = build_pruner("harp", 0.99)
    pruner.attach(model)
    pruner.finalize()
    model.eval()
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        expected = model(x)
    # independent count: the input channels of each layer whose masked weights are all zero
    unused = {name: int((module.weight.detach().abs().sum(dim=[d for d in range(module.weight.dim()) if d != 1])
                         == 0).sum()) for name, module in model.named_modules()
              if isinstance(module, torch.nn.Conv2d | torch.nn.Linear)}
    assert unused["net.classifier.3"] > 0
    slim, plan = slim_model(copy.deepcopy(model), (1, 28, 28))
    with torch.no_grad():
        assert torch.allclose(slim(x), expected, atol=1e-5)
    for name, inputs in plan.inputs.items():
        assert len(inputs) == model.get_submodule(name).weight.shape[1] - unused[name]
    dense = zeroed_model(model)  # the same model without the masks' scores and rates
    assert sum(p.numel() for p in slim.parameters()) < sum(p.numel() for p in dense.parameters())
