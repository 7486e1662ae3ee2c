"""TRADES and MART losses against hand computations; Free-AT replays; every objective trains a stage."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from harp_prune.attacks import PGD
from harp_prune.data import make_loader
from harp_prune.errors import HarpError
from harp_prune.training import FreeAT, build_objective, mart_loss, trades_loss, train_epoch


def softmax(z):
    e = [math.exp(v) for v in z]
    return [v / sum(e) for v in e]


def test_trades_loss_by_hand():
    # p_nat = softmax(1, 0), p_adv = softmax(0, 1): KL = (p - q) * log(p / q) summed = (0.7311 - 0.2689) * 1
    p = math.e / (math.e + 1)
    expected = -math.log(p) + 6.0 * (p - (1 - p)) * 1.0
    got = trades_loss(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]]), torch.tensor([0]))
    assert float(got) == pytest.approx(expected, rel=1e-5)
    assert float(got) == pytest.approx(3.0861, abs=1e-3)
    # batch mean: a second identical row leaves it unchanged; beta = 0 leaves plain CE
    two = trades_loss(torch.tensor([[1.0, 0.0]] * 2), torch.tensor([[0.0, 1.0]] * 2), torch.tensor([0, 0]))
    assert float(two) == pytest.approx(expected, rel=1e-5)
    assert float(trades_loss(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]]), torch.tensor([0]), 0.0)) \
        == pytest.approx(-math.log(p), rel=1e-5)


def _mart_by_hand(nat, adv, y, beta):
    p_nat, p_adv = softmax(nat), softmax(adv)
    ranked = sorted(range(len(adv)), key=lambda k: p_adv[k])
    wrong = ranked[-2] if ranked[-1] == y else ranked[-1]
    bce = -math.log(p_adv[y]) - math.log(1.0001 - p_adv[wrong])
    kl = sum(a * math.log(a / b) for a, b in zip(p_nat, p_adv, strict=True))
    return bce + beta * kl * (1.0000001 - p_nat[y])


@pytest.mark.parametrize("adv", [[0.0, 1.0, 2.0], [3.0, 1.0, 2.0]])  # the label is / is not p_adv's top class
def test_mart_loss_by_hand(adv):
    nat = [2.0, 0.0, 0.0]
    got = mart_loss(torch.tensor([nat]), torch.tensor([adv]), torch.tensor([0]), beta=5.0)
    assert float(got) == pytest.approx(_mart_by_hand(nat, adv, 0, 5.0), rel=1e-5)


def test_mart_loss_batch_is_mean_of_rows():
    nat, adv = [[2.0, 0.0, 0.0], [0.0, 1.0, 0.5]], [[0.0, 1.0, 2.0], [3.0, 1.0, 2.0]]
    got = mart_loss(torch.tensor(nat), torch.tensor(adv), torch.tensor([0, 1]), beta=5.0)
    expected = (_mart_by_hand(nat[0], adv[0], 0, 5.0) + _mart_by_hand(nat[1], adv[1], 1, 5.0)) / 2
    assert float(got) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("name,options", [("trades", {}), ("mart", {}), ("free_at", {"replays": 2}),
                                          ("trades", {"beta": 1.0})])
def test_objectives_train_and_keep_options(tiny_splits, name, options):
    from harp_prune.models import build_model

    torch.manual_seed(0)
    info = tiny_splits.info
    model = build_model("small_cnn", info.input_shape, 10, info.mean, info.std)
    objective = build_objective(name, PGD(0.1, 0.025, 2), **options)
    for key, value in options.items():
        assert getattr(objective, key) == value
    loader = make_loader(tiny_splits.train, 64, True, 0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    steps = []
    optimizer.step = (lambda step: lambda *a, **k: (steps.append(1), step(*a, **k))[1])(optimizer.step)
    first = train_epoch(model, loader, optimizer, objective, torch.device("cpu"), show_progress=False)
    second = train_epoch(model, loader, optimizer, objective, torch.device("cpu"), show_progress=False)
    assert math.isfinite(first["loss"]) and second["loss"] < first["loss"]
    assert len(steps) == 2 * len(loader) * objective.replays


def test_free_at_noise_persists_and_stays_in_ball(tiny_splits, trained_model):
    objective = FreeAT(PGD(0.1, 0.025, 1), replays=3)
    x = torch.stack([tiny_splits.train[i][0] for i in range(16)])
    y = torch.stack([tiny_splits.train[i][1] for i in range(16)])
    model = copy.deepcopy(trained_model).train()
    for _ in range(3):
        loss, _ = objective.loss(model, x, y)
        loss.backward()
        objective.after_backward()
    assert objective.noise.abs().max() == pytest.approx(0.1)
    assert objective.noise.abs().max() <= 0.1 + 1e-7
    # a smaller last batch uses the front of the same buffer
    loss, _ = objective.loss(model, x[:4], y[:4])
    assert objective._input.shape[0] == 4


def test_objective_option_errors():
    with pytest.raises(HarpError, match="beta"):
        build_objective("pgd_at", PGD(0.1, 0.025, 2), beta=3.0)
    with pytest.raises(HarpError, match="linf"):
        build_objective("free_at", PGD(1.0, 0.2, 2, norm="l2"))
