"""Per-layer masks: top-k of |S| with k from a(l), the a_min floor, and the once-per-step mask cache."""

import math

import pytest
import torch
from torch import nn

from harp_prune.pruning import keep_ratio, kept_count, unwrap_model, wrap_model


@pytest.mark.parametrize("rate", [-8.0, -2.2, 0.0, 1.5, 6.0])
def test_mask_density_is_integer_topk_of_keep_ratio(rate):
    torch.manual_seed(0)
    layer = wrap_model(nn.Conv2d(8, 16, 3), min_keep=0.001)['']
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
    layer = wrap_model(nn.Linear(100, 100), min_keep=0.002)['']
    with torch.no_grad():
        layer.rate.fill_(-1e4)
    assert int(layer.mask().sum()) >= math.ceil(0.002 * layer.numel) - 1


def test_mask_is_cached_until_scores_or_rate_change():
    linear = nn.Linear(50, 20)
    layer = wrap_model(linear, min_keep=0.01)['']
    with torch.no_grad():
        layer.rate.fill_(-1.0)
    first = layer.mask()
    linear(torch.randn(3, 50))
    assert layer.mask() is first  # forward passes (attack iterations) reuse it
    optimizer = torch.optim.SGD([layer.scores, layer.rate], lr=1.0)
    linear(torch.randn(3, 50)).pow(2).sum().backward()
    optimizer.step()
    assert layer.mask() is not first  # an optimiser step invalidates it
    second = layer.mask()
    state = dict(linear.state_dict())
    state["parametrizations.weight.0.scores"] = torch.randn(20, 50)
    linear.load_state_dict(state)
    assert layer.mask() is not second  # so does loading other values


def _true_mask(layer) -> torch.Tensor:
    """The mask computed from scratch from the current values: top-k of |S|."""
    magnitude = layer.scores.detach().abs().flatten()
    mask = torch.zeros_like(magnitude)
    mask[torch.topk(magnitude, layer.kept_units()).indices] = 1.0
    return mask.view_as(layer.scores)


OPTIMISERS = [
    ("sgd", lambda p: torch.optim.SGD(p, lr=0.5, momentum=0.9)),
    ("sgd-foreach", lambda p: torch.optim.SGD(p, lr=0.5, momentum=0.9, foreach=True)),
    ("sgd-fused", lambda p: torch.optim.SGD(p, lr=0.5, momentum=0.9, fused=True)),
    ("adam", lambda p: torch.optim.Adam(p, lr=0.5)),
    ("adam-foreach", lambda p: torch.optim.Adam(p, lr=0.5, foreach=True)),
    ("adam-fused", lambda p: torch.optim.Adam(p, lr=0.5, fused=True)),
    ("adamw-fused", lambda p: torch.optim.AdamW(p, lr=0.5, fused=True)),
    ("rmsprop", lambda p: torch.optim.RMSprop(p, lr=0.5)),
    ("adagrad-fused", lambda p: torch.optim.Adagrad(p, lr=0.5, fused=True)),
]


@pytest.mark.parametrize("name,make", OPTIMISERS, ids=[o[0] for o in OPTIMISERS])
def test_mask_never_stale_after_any_optimiser_step(name, make):
    """Fused and foreach optimisers change values without moving the version counter: the mask must follow."""
    torch.manual_seed(0)
    linear = nn.Linear(40, 30)
    layer = wrap_model(linear, min_keep=0.01)['']
    with torch.no_grad():
        layer.scores.normal_()
        layer.rate.fill_(-1.0)
    optimizer = make([layer.scores, layer.rate])
    for _ in range(3):
        linear(torch.randn(8, 40)).pow(2).sum().backward()  # uses (and caches) the mask
        optimizer.step()
        optimizer.zero_grad()
        assert torch.equal(layer.mask(), _true_mask(layer))
        assert torch.equal(linear.weight, layer.weight * _true_mask(layer))


def test_mask_never_stale_after_writes_through_data():
    linear = nn.Linear(40, 30)
    layer = wrap_model(linear, min_keep=0.01)['']
    with torch.no_grad():
        layer.rate.fill_(-1.0)
    before = layer.mask().clone()
    layer.scores.data.copy_(torch.randn(30, 40))  # no version-counter bump
    assert not torch.equal(layer.mask(), before)
    assert torch.equal(layer.mask(), _true_mask(layer))
    layer.rate.data.fill_(1.0)
    assert torch.equal(layer.mask(), _true_mask(layer))
    assert int(layer.mask().sum()) == layer.kept_units()


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
    assert type(model.blocks[0]).__mro__[1] is nn.Conv2d  # the model keeps its own module types
    with torch.no_grad():
        for layer in layers.values():
            layer.rate.fill_(-1.0)
    x = torch.rand(2, 1, 8, 8)
    masked_out = model(x)
    masks = {name: layer.mask().clone() for name, layer in layers.items()}
    unwrap_model(model)
    assert type(model.blocks[0]) is nn.Conv2d and type(model.head[1]) is nn.Linear
    assert torch.allclose(model(x), masked_out, atol=1e-6)
    assert torch.all(model.blocks[1].weight[masks["blocks.1"] == 0] == 0)
