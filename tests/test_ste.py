"""The straight-through estimator: score and rate gradients against hand-computed values (docs/method.md, 'The STE')."""

import math

import torch
from torch import nn

from harp_prune.pruning import wrap_model


def test_score_and_rate_gradients_match_hand_computation():
    torch.manual_seed(0)
    linear = nn.Linear(4, 3, bias=True)
    layer = wrap_model(linear, min_keep=0.05)['']
    with torch.no_grad():
        layer.scores.copy_(torch.randn(3, 4))
        layer.rate.fill_(0.3)
    x = torch.randn(5, 4)
    coefficients = torch.randn(5, 3)
    loss = (linear(x) * coefficients).sum()
    loss.backward()

    # dL/dW_eff = c^T x for y = x W_eff^T + b; the mask gradient is g = dL/dW_eff * W.
    grad_effective = coefficients.T @ x
    g = grad_effective * layer.weight.detach()
    sig = 1 / (1 + math.exp(-0.3))
    dratio_drate = (1 - 0.05) * sig * (1 - sig)
    assert torch.allclose(layer.scores.grad, g * torch.sign(layer.scores.detach()), atol=1e-6)
    assert math.isclose(float(layer.rate.grad), float(g.sum()) * dratio_drate, rel_tol=1e-5)
    # Pruned positions get gradient too: the STE ignores the binarisation.
    pruned = layer.mask() == 0
    assert pruned.any() and (layer.scores.grad[pruned] != 0).any()


def test_forward_uses_masked_weight_and_weight_gradient_is_masked():
    torch.manual_seed(1)
    conv = nn.Conv2d(2, 3, 3, padding=1)
    layer = wrap_model(conv, min_keep=0.0)['']
    with torch.no_grad():
        layer.rate.fill_(-1.0)
    layer.scores.requires_grad_(False)
    layer.rate.requires_grad_(False)
    x = torch.randn(2, 2, 5, 5)
    expected = nn.functional.conv2d(x, layer.weight * layer.mask(), conv.bias, padding=1)
    out = conv(x)
    assert torch.allclose(out, expected, atol=1e-6)
    out.sum().backward()
    assert torch.all(layer.weight.grad[layer.mask() == 0] == 0)


def test_frontier_rate_gradient_is_the_mean_over_the_weights_next_to_the_threshold():
    """rate_boundary_width f: dL/da = N * mean(g) over the ceil(f * kept) last kept and next pruned weights."""
    torch.manual_seed(2)
    linear = nn.Linear(10, 8, bias=False)
    layer = wrap_model(linear, min_keep=0.0)['']
    layer.rate_frontier = 0.25
    with torch.no_grad():
        layer.scores.copy_(torch.randperm(80).float().view(8, 10) + 1.0)  # distinct |S|: ranks are exact
        layer.rate.fill_(-0.5)
    kept = layer.kept_units()
    x, coefficients = torch.randn(6, 10), torch.randn(6, 8)
    (linear(x) * coefficients).sum().backward()

    g = (coefficients.T @ x) * layer.weight.detach()
    rank = torch.empty(80, dtype=torch.long)
    rank[layer.scores.detach().flatten().argsort(descending=True)] = torch.arange(80)
    width = math.ceil(0.25 * kept)
    frontier = ((rank >= kept - width) & (rank < kept + width)).view(8, 10)
    assert int(frontier.sum()) == 2 * width and int((frontier & (layer.mask() == 1)).sum()) == width
    sig = 1 / (1 + math.exp(0.5))
    expected = 80 * float(g[frontier].mean()) * sig * (1 - sig)
    assert math.isclose(float(layer.rate.grad), expected, rel_tol=1e-5)
    # the scores' gradient does not depend on the rate estimator
    assert torch.allclose(layer.scores.grad, g * torch.sign(layer.scores.detach()), atol=1e-6)


def test_rate_boundary_width_reaches_the_layers_and_survives_a_checkpoint(tmp_path):
    from harp_prune.pruning import HarpPruner, masked_layers
    from harp_prune.training import load_model, save_atomic

    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))
    pruner = HarpPruner(0.9, rate_boundary_width=0.1)
    pruner.attach(model)
    assert all(layer.rate_frontier == 0.1 for layer in masked_layers(model).values())
    path = tmp_path / "pruned.pt"
    save_atomic({"model": model.state_dict(), "model_spec": {"name": None}, "pruning": pruner.describe()}, path)
    fresh = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))
    loaded, loaded_pruner, _ = load_model(path, model=fresh)
    assert loaded_pruner.rate_frontier == 0.1
    assert all(layer.rate_frontier == 0.1 for layer in masked_layers(loaded).values())
    # a checkpoint written before the option was renamed (it was rate_frontier) loads with its value
    record = pruner.describe()
    record["rate_frontier"] = record.pop("rate_boundary_width")
    save_atomic({"model": model.state_dict(), "model_spec": {"name": None}, "pruning": record}, path)
    _, older, _ = load_model(path, model=nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3)))
    assert older.options.rate_boundary_width == 0.1
