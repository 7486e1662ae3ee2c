"""L_hw = max(soft density / a_t - 1, 0) and the step-wise γ schedule (ramp, freeze, never unfreeze)."""

import pytest
import torch
from torch import nn

from harp_prune.pruning import (
    GammaSchedule,
    HarpPaperPruner,
    HarpPruner,
    kept_count,
    size_loss,
    soft_density,
    wrap_model,
)


def _layers(ratios, sizes):
    layers = []
    for ratio, (fan_in, fan_out) in zip(ratios, sizes, strict=True):
        layer = wrap_model(nn.Linear(fan_in, fan_out, bias=False), min_keep=0.0)['']
        with torch.no_grad():
            layer.rate.fill_(torch.logit(torch.tensor(ratio)).item())
        layers.append(layer)
    return layers


def test_size_loss_matches_hand_computation():
    layers = _layers([0.5, 0.1], [(10, 10), (30, 10)])  # N = 100 and 300
    soft = (100 * 0.5 + 300 * 0.1) / 400
    with torch.no_grad():
        assert float(soft_density(layers)) == pytest.approx(soft, rel=1e-5)
        assert float(size_loss(layers, 0.05)) == pytest.approx(soft / 0.05 - 1, rel=1e-5)
        assert float(size_loss(layers, 0.5)) == 0.0  # below the target costs nothing (one-sided hinge)


def test_initial_size_loss_of_uniform_ten_percent_start_at_99_percent():
    model = nn.Sequential(nn.Linear(100, 100), nn.Linear(100, 10))
    pruner = HarpPruner(0.99)
    pruner.attach(model)
    assert pruner.min_keep == pytest.approx(0.001)
    assert float(pruner.size_loss().detach()) == pytest.approx(9.0, rel=1e-4)  # docs/method.md, 'Initialisation'


def test_gamma_ramps_freezes_and_never_unfreezes():
    schedule = GammaSchedule(0.01)
    assert [schedule.gamma(e) for e in range(3)] == pytest.approx([0.01, 0.02, 0.03])
    schedule.end_epoch(0, 2.5)
    schedule.end_epoch(1, 0.3)
    assert not schedule.reached and schedule.gamma(2) == pytest.approx(0.03)
    schedule.end_epoch(2, 0.00004)  # rounds to 0 at 4 decimals
    assert schedule.reached and schedule.reached_epoch == 2
    schedule.end_epoch(3, 5.0)  # the hinge re-activates, γ stays frozen
    assert all(schedule.gamma(e) == pytest.approx(0.03) for e in range(3, 10))
    restored = GammaSchedule()
    restored.load_state_dict(schedule.state_dict())
    assert restored == schedule


def test_penalty_gradient_pushes_every_rate_down():
    model = nn.Sequential(nn.Linear(100, 100), nn.Linear(100, 10))
    pruner = HarpPaperPruner(0.99, gamma0=0.1)
    pruner.attach(model)
    pruner.penalty(epoch=2).backward()
    for layer in pruner.layers:
        assert float(layer.rate.grad) > 0  # gradient descent lowers the keep-ratio
    big, small = pruner.layers
    assert float(big.rate.grad) > float(small.rate.grad)  # larger layers are pushed harder


def test_the_two_counting_conventions_that_differ_from_the_authors_code():
    """docs/method.md lists both: harp-prune counts k = N - floor((1 - a) N) in float64 from the float32 a, the
    authors int((1 - a) N) in float32; where a N is an integer the float32 product can round up to it, and the
    authors prune one weight more. At L_hw = 0 their torch.maximum passes half the gradient, relu none."""
    ratio = torch.tensor(0.1)  # a float32 keep-ratio, as the masks read it
    authors_kept = 10 - int(((1 - ratio) * 10).item())
    assert (authors_kept, kept_count(float(ratio), 10)) == (1, 2)
    tie = torch.zeros((), requires_grad=True)
    torch.maximum(tie, torch.zeros(())).backward()
    assert float(tie.grad) == 0.5
    tie.grad = None
    torch.relu(tie).backward()
    assert float(tie.grad) == 0.0
