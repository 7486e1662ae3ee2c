"""Per-layer masks: top-k of |S| with k from a(l), the a_min floor, and the once-per-step mask cache."""

import math

import pytest
import torch
from torch import nn

from harp_prune.pruning import MaskedLayer, keep_ratio, kept_count, unwrap_model, wrap_model


@pytest.mark.parametrize("rate", [-8.0, -2.2, 0.0, 1.5, 6.0])
def test_mask_density_is_integer_topk_of_keep_ratio(rate):
    torch.manual_seed(0)
    layer = MaskedLayer(nn.Conv2d(8, 16, 3), min_keep=0.001)
    with torch.no_grad():
        layer.scores.normal_()
        layer.rate.fill_(rate)
    a = float(keep_ratio(torch.tensor(rate), 0.001))
    expected = layer.numel - math.floor((1 - a) * layer.numel)
    mask = layer.mask()
    assert int(mask.sum()) == expected == kept_count(a, layer.numel)
    # the kept entries are exactly the largest |S|
    magnitude = layer.scores.detach().abs().flatten()
    threshold = magnitude.sort(descending=True).values[expected - 1]
    assert torch.all(magnitude[mask.flatten() == 1] >= threshold)
    assert torch.all(magnitude[mask.flatten() == 0] <= threshold)


def test_keep_ratio_never_below_min_keep():
    rates = torch.tensor([-1e4, -100.0, -20.0, 0.0, 20.0])
    a = keep_ratio(rates, 0.002)
    assert torch.all(a >= 0.002) and torch.all(a <= 1.0)
    layer = MaskedLayer(nn.Linear(100, 100), min_keep=0.002)
    with torch.no_grad():
        layer.rate.fill_(-1e4)
    assert int(layer.mask().sum()) >= math.ceil(0.002 * layer.numel) - 1


def test_mask_is_cached_until_scores_or_rate_change():
    layer = MaskedLayer(nn.Linear(50, 20), min_keep=0.01)
    with torch.no_grad():
        layer.rate.fill_(-1.0)
    first = layer.mask()
    layer(torch.randn(3, 50))
    assert layer.mask() is first  # forward passes (attack iterations) reuse it
    optimizer = torch.optim.SGD([layer.scores, layer.rate], lr=1.0)
    layer(torch.randn(3, 50)).pow(2).sum().backward()
    optimizer.step()
    assert layer.mask() is not first  # an optimiser step invalidates it
    second = layer.mask()
    layer.load_state_dict(layer.state_dict())
    assert layer.mask() is not second  # so does loading a state


def test_wrap_any_module_and_unwrap_zeroes_pruned_weights():
    class Custom(nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = nn.ModuleList([nn.Conv2d(1, 4, 3), nn.Conv2d(4, 4, 3)])
            self.head = nn.Sequential(nn.Flatten(), nn.Linear(4 * 4 * 4, 3))

        def forward(self, x):
            for block in self.blocks:
                x = torch.relu(block(x))
            return self.head(x)

    model = Custom()
    layers = wrap_model(model, min_keep=0.0)
    assert list(layers) == ["blocks.0", "blocks.1", "head.1"]
    with torch.no_grad():
        for layer in layers.values():
            layer.rate.fill_(-1.0)
    x = torch.rand(2, 1, 8, 8)
    masked_out = model(x)
    masks = {name: layer.mask().clone() for name, layer in layers.items()}
    unwrap_model(model)
    assert isinstance(model.blocks[0], nn.Conv2d) and isinstance(model.head[1], nn.Linear)
    assert torch.allclose(model(x), masked_out, atol=1e-6)
    assert torch.all(model.blocks[1].weight[masks["blocks.1"] == 0] == 0)
