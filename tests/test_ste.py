"""The straight-through estimator: score and rate gradients against values computed by hand (method.md §3.3)."""

import math

import torch
from torch import nn

from harp_prune.pruning import MaskedLayer


def test_score_and_rate_gradients_match_hand_computation():
    torch.manual_seed(0)
    linear = nn.Linear(4, 3, bias=True)
    layer = MaskedLayer(linear, min_keep=0.05)
    with torch.no_grad():
        layer.scores.copy_(torch.randn(3, 4))
        layer.rate.fill_(0.3)
    x = torch.randn(5, 4)
    coefficients = torch.randn(5, 3)
    loss = (layer(x) * coefficients).sum()
    loss.backward()

    # dL/dW_eff = c^T x for y = x W_eff^T + b; the mask gradient is g = dL/dW_eff * W.
    grad_effective = coefficients.T @ x
    g = grad_effective * linear.weight.detach()
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
    layer = MaskedLayer(conv, min_keep=0.0)
    with torch.no_grad():
        layer.rate.fill_(-1.0)
    layer.scores.requires_grad_(False)
    layer.rate.requires_grad_(False)
    x = torch.randn(2, 2, 5, 5)
    expected = nn.functional.conv2d(x, conv.weight * layer.mask(), conv.bias, padding=1)
    out = layer(x)
    assert torch.allclose(out, expected, atol=1e-6)
    out.sum().backward()
    assert torch.all(conv.weight.grad[layer.mask() == 0] == 0)
