"""Channel HARP on depthwise, grouped and reused convolutions: ties, gradients, budget and exact slimming."""

from __future__ import annotations

import copy

import pytest
import torch
from test_channel_budget import counted_cost, realised_by_slimming
from torch import nn

from harp_prune.export import slim_model
from harp_prune.pruning import build_pruner

SHAPE = (3, 8, 8)


def _bn_relu(channels: int) -> list[nn.Module]:
    return [nn.BatchNorm2d(channels), nn.ReLU()]


def depthwise_net() -> nn.Module:
    """A MobileNet-style block: pointwise, depthwise (with bias), pointwise."""
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), *_bn_relu(8),
        nn.Conv2d(8, 16, 1), *_bn_relu(16),  # 3: produces the depthwise conv's input
        nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=True), *_bn_relu(16),  # 6: depthwise
        nn.Conv2d(16, 12, 1), *_bn_relu(12),  # 9: reads the depthwise output
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(12, 10),
    )


def grouped_net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), *_bn_relu(8),
        nn.Conv2d(8, 16, 1), *_bn_relu(16),  # 3: produces the grouped conv's input
        nn.Conv2d(16, 24, 3, padding=1, groups=4), *_bn_relu(24),  # 6: 4 groups of 4 inputs
        nn.Conv2d(24, 12, 1), *_bn_relu(12),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(12, 10),
    )


class Block(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(channels, channels, 3, padding=1), nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv2(torch.relu(self.bn1(self.conv1(x)))))


class ReusedNet(nn.Module):
    """One conv applied twice in a row, then one block applied twice."""

    def __init__(self) -> None:
        super().__init__()
        self.stem, self.bn = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.shared = nn.Conv2d(8, 8, 3, padding=1)
        self.block = Block(8)
        self.head = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn(self.stem(x)))
        x = self.shared(torch.relu(self.shared(x)))
        x = self.block(self.block(x))
        return self.head(x.mean(dim=(2, 3)))


def _randomised(model: nn.Module) -> nn.Module:
    torch.manual_seed(0)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):  # non-trivial BN, so slicing it wrongly would show
                module.running_mean.normal_()
                module.running_var.uniform_(0.5, 2.0)
                module.weight.normal_()
                module.bias.normal_()
            elif isinstance(module, nn.Conv2d) and module.bias is not None:
                module.bias.normal_()
    return model.eval()


def _pruned(model: nn.Module, sparsity: float = 0.5, target: str = "flops"):
    dense = counted_cost(model, SHAPE)
    pruner = build_pruner("harp-channel", sparsity, input_shape=SHAPE, channel_target=target)
    layers = pruner.attach(model)
    return pruner, layers, dense


class SharedReluNet(nn.Module):
    """One stateless ReLU module applied after every conv, as torchvision's ResNet blocks do (``self.relu``)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.conv2, self.bn2 = nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.relu = nn.ReLU(inplace=True)
        self.head = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        return self.head(x.mean(dim=(2, 3)))


ARCHS = {"depthwise": depthwise_net, "grouped": grouped_net, "reused": ReusedNet, "shared_relu": SharedReluNet}


@pytest.mark.parametrize("arch", ARCHS)
def test_dense_cost_counts_every_call(arch):
    model = _randomised(ARCHS[arch]())
    pruner, _, dense = _pruned(model)
    assert pruner.cost.dense("flops") == dense["flops"]
    assert pruner.cost.dense("params") == dense["params"]
    assert not pruner.trace.frozen


@pytest.mark.parametrize("arch", ARCHS)
def test_penalty_reaches_scores_and_rates(arch):
    model = _randomised(ARCHS[arch]())
    pruner, _, _ = _pruned(model)
    pruner.trainable_parameters(model)
    loss = model(torch.rand(2, *SHAPE)).logsumexp(1).mean() + pruner.penalty(5)
    loss.backward()
    for index, head in enumerate(pruner.group_layers):
        if index != pruner.trace.input_group:
            assert head.rate.grad is not None and torch.count_nonzero(head.scores.grad) > 0


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("target", ["flops", "params", "channels"])
def test_finalize_meets_the_budget_and_slimming_is_exact(arch, target):
    model = _randomised(ARCHS[arch]())
    pruner, _, dense = _pruned(model, 0.6, target)
    with torch.no_grad():
        for layer in pruner.group_layers:
            layer.scores.normal_()
    pruner.finalize()
    realised = realised_by_slimming(model, SHAPE, dense)
    assert realised[pruner.kind] <= pruner.budget / pruner.cost.dense(pruner.kind) * (1 + 1e-9)
    assert realised["flops"] == pytest.approx(pruner.realised()["flops"])
    assert realised["params"] == pytest.approx(pruner.realised()["params"])
    x = torch.rand(4, *SHAPE)
    with torch.no_grad():
        expected = model(x)
        slim, _ = slim_model(copy.deepcopy(model), SHAPE)
        assert (slim(x) - expected).abs().max() < 1e-5 * expected.abs().max()


def _finalized(model: nn.Module, sparsity: float = 0.6, target: str = "flops"):
    pruner, layers, _ = _pruned(_randomised(model), sparsity, target)
    with torch.no_grad():
        for layer in pruner.group_layers:
            layer.scores.normal_()
    pruner.finalize()
    return pruner, layers


def _zero_input_channels(weight: torch.Tensor, depthwise: bool = False) -> set[int]:
    """Input channels whose weights are all zero, from the effective (masked) weight alone."""
    if depthwise:
        return {c for c in range(weight.shape[0]) if not weight[c].any()}
    return {c for c in range(weight.shape[1]) if not weight[:, c].any()}


def test_depthwise_conv_ties_its_input_and_output_channels():
    model = depthwise_net()
    pruner, layers = _finalized(model)
    depthwise, after = layers["6"], layers["9"]
    assert [m for m in pruner.trace.groups if "6" in m] == [["6", "9"]]
    assert depthwise.scores is after.scores and depthwise.weight_mask().shape == (16, 1, 1, 1)
    dropped = _zero_input_channels(depthwise.masked_weight().detach(), depthwise=True)
    assert dropped == _zero_input_channels(after.masked_weight().detach())
    assert 0 < len(dropped) < 16
    slim, _ = slim_model(model, SHAPE)
    kept = 16 - len(dropped)
    assert (slim[3].out_channels, slim[4].num_features) == (kept, kept)  # the producer loses its filters
    assert slim[6].in_channels == slim[6].out_channels == slim[6].groups == kept
    assert (slim[7].num_features, slim[9].in_channels) == (kept, kept)


def test_grouped_conv_keeps_the_same_positions_in_every_group():
    model = grouped_net()
    _, layers = _finalized(model)
    grouped = layers["6"]
    assert grouped.units == 4 and grouped.weight_mask().shape == (1, 4, 1, 1)
    effective = grouped.masked_weight().detach()  # [24, 4, 3, 3]: output block j reads inputs 4j..4j+3
    per_block = [_zero_input_channels(effective[6 * j: 6 * j + 6]) for j in range(4)]
    assert all(block == per_block[0] for block in per_block) and 0 < len(per_block[0]) < 4
    kept = 4 - len(per_block[0])
    slim, _ = slim_model(model, SHAPE)
    assert (slim[6].in_channels, slim[6].groups, slim[6].out_channels) == (4 * kept, 4, 24)
    assert slim[3].out_channels == 4 * kept


def test_a_module_used_twice_shares_one_mask_and_slims_exactly():
    model = ReusedNet()
    pruner, layers = _finalized(model, 0.7)
    assert ["shared"] in pruner.trace.groups and pruner.trace.layers["shared"].calls == 2
    assert pruner.trace.layers["block.conv1"].calls == 2
    shared = layers["shared"]
    assert 0 < int(shared.mask().sum()) < 8
    x = torch.rand(3, *SHAPE)
    with torch.no_grad():
        expected = model(x)
        slim, plan = slim_model(model, SHAPE)
        torch.testing.assert_close(slim(x), expected, rtol=1e-4, atol=1e-5)
    assert "shared" in plan.gathers  # its second call reads its own output: nothing upstream can shrink
    assert slim.shared[1].in_channels == int(shared.mask().sum())


def test_a_shared_stateless_module_does_not_stop_the_producer_losing_its_filters():
    model = SharedReluNet()
    _, layers = _finalized(model, 0.5)
    kept = int(layers["conv2"].mask().sum())
    assert 0 < kept < 8
    x = torch.rand(3, *SHAPE)
    with torch.no_grad():
        expected = model(x)
        slim, plan = slim_model(model, SHAPE)
        torch.testing.assert_close(slim(x), expected, rtol=1e-4, atol=1e-5)
    assert "conv2" not in plan.gathers  # a BatchNorm used twice would still stop it; a ReLU need not
    assert (slim.conv1.out_channels, slim.bn1.num_features, slim.conv2.in_channels) == (kept, kept, kept)


def test_reused_model_reports_flops_counted_per_call():
    model = _randomised(ReusedNet())
    pruner, _, dense = _pruned(model, 0.6)
    shared = pruner.trace.layers["shared"]
    assert shared.out_spatial == 2 * 8 * 8
    assert pruner.cost.dense("flops") == dense["flops"]


class ResidualDepthwise(nn.Module):
    """A depthwise conv whose output also feeds a residual sum: its channels cannot be removed consistently."""

    def __init__(self) -> None:
        super().__init__()
        self.stem, self.bn = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.depthwise = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.pointwise = nn.Conv2d(8, 8, 1)
        self.head = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.depthwise(torch.relu(self.bn(self.stem(x))))
        return self.head((self.pointwise(torch.relu(y)) + y).mean(dim=(2, 3)))


def test_a_depthwise_conv_that_cannot_be_slimmed_keeps_its_channels():
    model = ResidualDepthwise()
    pruner, layers = _finalized(model, 0.5, "channels")  # the budget thins only the groups that can be thinned
    group = pruner.trace.layers["depthwise"].group
    assert "depthwise conv 'depthwise'" in pruner.trace.frozen[group]
    assert int(layers["depthwise"].mask().sum()) == 8
    assert 0 < int(layers["pointwise"].mask().sum()) < 8  # the rest of the model is still pruned
    x = torch.rand(3, *SHAPE)
    with torch.no_grad():
        expected = model(x)
        slim, _ = slim_model(model, SHAPE)
        torch.testing.assert_close(slim(x), expected, rtol=1e-4, atol=1e-5)
    assert slim.depthwise.groups == 8
