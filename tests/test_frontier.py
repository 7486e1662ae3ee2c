"""The frontier allocation (a harp-prune extension): the budget holds after every step, rates move towards the
layers whose next weights are worth most, and with no rate step it is HYDRA on the initial layer budget."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from kept_counts import kept_and_total
from torch.nn.utils import parametrize

from harp_prune.attacks import PGD
from harp_prune.data import make_loader
from harp_prune.errors import HarpError
from harp_prune.pruning import build_pruner, rebuild_pruner
from harp_prune.training import PGDAT
from harp_prune.training.loop import train_epoch
from harp_prune.training.stage import StageCheckpoints, StageData, StageSettings, run_stage


def _prune_epoch(model, pruner, splits, steps_seen=None):
    params = pruner.trainable_parameters(model)
    optimizer = torch.optim.SGD(params, lr=0.1, momentum=0.9)
    loader = make_loader(splits.train, 64, shuffle=True, seed=0)
    objective = PGDAT(PGD(eps=0.1, steps=2, step_size=0.05))
    after_step = pruner.after_step
    if steps_seen is not None:
        def after_step():
            pruner.after_step()
            steps_seen.append([layer.kept() for layer in pruner.layers])
    train_epoch(model, loader, optimizer, objective, torch.device("cpu"), penalty=lambda: pruner.penalty(0),
                after_step=after_step, perturb=pruner.perturb_scores, show_progress=False)


@pytest.mark.parametrize("sparsity", [0.99, 0.999])
def test_budget_holds_after_every_step(trained_model, tiny_splits, sparsity):
    model = copy.deepcopy(trained_model)
    pruner = build_pruner("frontier", sparsity, rate_step=0.2)
    pruner.attach(model)
    total = sum(layer.numel for layer in pruner.layers)
    target = round((1 - sparsity) * total)
    start = [layer.kept() for layer in pruner.layers]
    counts: list[list[int]] = []
    _prune_epoch(model, pruner, tiny_splits, counts)
    assert len(counts) == len(tiny_splits.train) // 64 + (len(tiny_splits.train) % 64 > 0)
    for step in counts:  # within the projection's tolerance of the budget after every step
        assert abs(sum(step) - target) <= max(1, int(0.005 * target)), (step, target)
    assert counts[-1] != start, "the allocation never moved"
    kept, dense = kept_and_total(model)  # independent count of the non-zero entries of W * M
    assert dense == total and kept == sum(counts[-1])


def test_no_rate_step_is_hydra_on_the_same_budget(trained_model, tiny_splits):
    models, pruners = [], []
    for method, options in (("frontier", {"rate_step": 0.0}), ("hydra", {"layer_budget": "lamp"})):
        model = copy.deepcopy(trained_model)
        pruner = build_pruner(method, 0.99, **options)
        pruner.attach(model)
        torch.manual_seed(0)
        _prune_epoch(model, pruner, tiny_splits)
        models.append(model)
        pruners.append(pruner)
    frontier, hydra = pruners
    assert [layer.kept() for layer in frontier.layers] == [layer.kept() for layer in hydra.layers]
    for a, b in zip(frontier.layers, hydra.layers, strict=True):
        assert torch.equal(a.mask(), b.mask())
        assert torch.equal(a.scores, b.scores)


def test_marginal_value_is_the_mean_mask_gradient_over_the_frontier(trained_model, tiny_splits):
    model = copy.deepcopy(trained_model).eval()
    pruner = build_pruner("frontier", 0.99, boundary_width=0.5)
    pruner.attach(model)
    images, labels = next(iter(make_loader(tiny_splits.train, 64, shuffle=False, seed=0)))
    torch.nn.functional.cross_entropy(model(images), labels).backward()
    # independently: a plain copy whose weights are W * M; dL/dM = dL/d(W * M) * W
    plain = copy.deepcopy(model)
    for module in plain.modules():
        if parametrize.is_parametrized(module, "weight"):
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
    torch.nn.functional.cross_entropy(plain(images), labels).backward()
    modules = dict(plain.named_modules())
    for name, layer in zip(pruner.layer_names, pruner.layers, strict=True):
        mask_gradient = (modules[name].weight.grad * layer.weight.detach()).flatten()
        order = torch.argsort(layer.scores.detach().abs().flatten(), descending=True)
        keep = layer.kept_units()
        width = max(1, math.ceil(0.5 * keep))
        frontier = order[max(0, keep - width):keep + width]
        torch.testing.assert_close(layer.frontier_gradient(), mask_gradient[frontier].mean(), rtol=1e-4, atol=1e-8)


def _feed_values(pruner, values):
    """Make each layer's frontier gradient (its marginal value) exactly values[i], as a backward pass would."""
    for layer, value in zip(pruner.layers, values, strict=True):
        layer.mask()
        layer.scores.grad = torch.full_like(layer.scores, value) * torch.sign(layer.scores.detach())


def test_rates_move_towards_the_layer_with_the_higher_marginal_value(trained_model):
    model = copy.deepcopy(trained_model)
    pruner = build_pruner("frontier", 0.99, rate_step=0.5, value_decay=0.0)
    pruner.attach(model)
    before = [layer.kept() for layer in pruner.layers]
    # layer 0's next weights lower the loss, the others' raise it
    _feed_values(pruner, [-1.0] + [1.0] * (len(pruner.layers) - 1))
    pruner.after_step()
    after = [layer.kept() for layer in pruner.layers]
    assert after[0] > before[0]
    assert sum(after[1:]) < sum(before[1:])


@pytest.mark.parametrize("value_scale", ["shared", "layer"])
def test_rate_steps_are_the_running_value_over_its_root_mean_square(trained_model, value_scale):
    """Steps computed by hand: the running means m_l and s_l of v_l and v_l^2, then -rate_step * m_l / sqrt(s),
    with s the mean of s_l over the layers ('shared') or s_l itself ('layer'); the budget projection adds one
    common shift, so the differences between the layers' logit changes are the differences of the steps."""
    model = copy.deepcopy(trained_model)
    rate_step, decay = 0.1, 0.5
    pruner = build_pruner("frontier", 0.99, rate_step=rate_step, value_decay=decay, value_scale=value_scale)
    pruner.attach(model)
    count = len(pruner.layers)
    # layer 0 is noise of a large spread, the others a small value of one sign
    sequence = [[(-1.0) ** step] + [-0.01 * (i + 1) for i in range(1, count)] for step in range(4)]
    mean = torch.zeros(count, dtype=torch.float64)
    square = torch.zeros(count, dtype=torch.float64)
    for step, values in enumerate(sequence):
        value = torch.tensor(values, dtype=torch.float64)
        mean = value.clone() if step == 0 else decay * mean + (1 - decay) * value
        square = value.square() if step == 0 else decay * square + (1 - decay) * value.square()
        before = torch.tensor([float(layer.rate) for layer in pruner.layers], dtype=torch.float64)
        _feed_values(pruner, values)
        pruner.after_step()
        moved = torch.tensor([float(layer.rate) for layer in pruner.layers], dtype=torch.float64) - before
        scale = square.sqrt() if value_scale == "layer" else square.mean().sqrt()
        expected = -rate_step * mean / scale
        torch.testing.assert_close(moved - moved[0], expected - expected[0], rtol=1e-4, atol=1e-5)
    if value_scale == "layer":  # each layer's own noise: the consistent small values move as far as they can
        assert torch.allclose(expected[1:], torch.full((count - 1,), rate_step, dtype=torch.float64))
        assert abs(float(expected[0])) < rate_step / 2
    else:  # one scale: the noisy layer moves furthest, the consistent small values barely
        assert abs(float(expected[0])) > 5 * float(expected[1:].abs().max())


def test_travel_bounds_each_layer_within_a_factor_of_its_initial_count(trained_model):
    model = copy.deepcopy(trained_model)
    pruner = build_pruner("frontier", 0.99, rate_step=0.5, value_decay=0.0, travel=2.0)
    pruner.attach(model)
    start = [layer.kept() for layer in pruner.layers]
    total = sum(start)
    for _ in range(30):  # layer 0's next weights are worth ever less, the others' ever more
        _feed_values(pruner, [1.0] + [-1.0] * (len(pruner.layers) - 1))
        pruner.after_step()
    after = [layer.kept() for layer in pruner.layers]
    for before, now, layer in zip(start, after, pruner.layers, strict=True):  # one weight of rounding
        assert before / 2 - 1 <= now <= min(layer.numel, 2 * before + 1), (start, after)
    assert abs(after[0] - start[0] / 2) <= 1, (start, after)  # without the bound it would fall to a_min
    assert abs(sum(after) - total) <= max(1, int(0.005 * total))
    unbounded = build_pruner("frontier", 0.99, rate_step=0.5, value_decay=0.0)
    unbounded.attach(copy.deepcopy(trained_model))
    for _ in range(30):
        _feed_values(unbounded, [1.0] + [-1.0] * (len(unbounded.layers) - 1))
        unbounded.after_step()
    assert unbounded.layers[0].kept() < start[0] / 2 - 1


def test_move_epochs_holds_the_allocation_after_those_epochs(trained_model):
    pruner = build_pruner("frontier", 0.99, rate_step=0.2, move_epochs=1)
    pruner.attach(copy.deepcopy(trained_model))
    values = [1.0] + [-1.0] * (len(pruner.layers) - 1)
    start = [layer.kept() for layer in pruner.layers]
    for _ in range(5):
        _feed_values(pruner, values)
        pruner.after_step()
    moved = [layer.kept() for layer in pruner.layers]
    assert moved != start and not pruner.allocation_held
    pruner.end_epoch(0)
    assert pruner.allocation_held
    rates = [layer.rate.clone() for layer in pruner.layers]
    for _ in range(5):
        _feed_values(pruner, values)
        pruner.after_step()
    assert [layer.kept() for layer in pruner.layers] == moved
    assert all(torch.equal(layer.rate, rate) for layer, rate in zip(pruner.layers, rates, strict=True))
    twin = rebuild_pruner(pruner.describe())  # a resumed run holds it too
    twin.load_state_dict(pruner.state_dict())
    assert twin.allocation_held
    with pytest.raises(HarpError, match="--prune-value-scale layer --prune-travel 3 --prune-move-epochs 1"):
        build_pruner("frontier", 0.99).load_state_dict(pruner.state_dict())  # resumed without move_epochs


def test_a_pruning_stage_holds_the_allocation_after_move_epochs(trained_model, tiny_splits, tmp_path):
    """Through the training stage (which calls end_epoch after each epoch): the counts move in epoch 1 and
    stand still for every step of epoch 2."""
    model = copy.deepcopy(trained_model)
    pruner = build_pruner("frontier", 0.99, rate_step=0.2, move_epochs=1)
    pruner.attach(model)
    start = [layer.kept() for layer in pruner.layers]
    counts: list[tuple[int, list[int]]] = []
    moving_step = pruner.after_step

    def after_step() -> None:
        moving_step()
        counts.append((pruner.epochs_done, [layer.kept() for layer in pruner.layers]))

    pruner.after_step = after_step  # the stage takes the pruner's after_step as it finds it
    data = StageData(make_loader(tiny_splits.train, 64, shuffle=True, seed=0),
                     make_loader(tiny_splits.val, 128, shuffle=False, seed=0))
    run_stage(StageSettings("prune", epochs=2, lr=0.1, show_progress=False), model,
              pruner.trainable_parameters(model), PGDAT(PGD(eps=0.1, steps=2, step_size=0.05)), data,
              StageCheckpoints(tmp_path / "prune", {}), torch.device("cpu"), pruner=pruner)
    first = [kept for epoch, kept in counts if epoch == 0]
    second = [kept for epoch, kept in counts if epoch == 1]
    assert first and second and len(first) + len(second) == len(counts)
    assert first[-1] != start, "the allocation never moved in the first epoch"
    assert all(kept == first[-1] for kept in second), "the allocation moved after move_epochs"


@pytest.mark.parametrize("value_scale", ["shared", "layer"])
def test_state_round_trip_and_rebuild(trained_model, value_scale):
    model = copy.deepcopy(trained_model)
    pruner = build_pruner("frontier", 0.99, rate_step=0.05, frontier=0.3, value_scale=value_scale)
    pruner.attach(model)
    _feed_values(pruner, [0.5 - i for i in range(len(pruner.layers))])
    pruner.after_step()
    twin = rebuild_pruner(pruner.describe())
    assert twin.options == pruner.options
    twin.load_state_dict(pruner.state_dict())
    assert torch.equal(twin.running_value, pruner.running_value)
    assert torch.equal(twin.running_square, pruner.running_square)
    assert twin.running_square.shape == ((len(pruner.layers),) if value_scale == "layer" else ())


def test_state_written_before_value_scale_loads_into_the_first_version_only():
    """Checkpoints from before the options stored the shared running square as a float; they resume as the
    first version ran, and a run with other settings is told how to resume them, not fed a wrong shape."""
    old_state = {"running_value": [1.0, -2.0], "running_square": 3.0}
    first = build_pruner("frontier", 0.99, value_scale="shared", travel=0)
    first.load_state_dict(old_state)
    assert torch.equal(first.running_square, torch.tensor(3.0, dtype=torch.float64))
    first.load_state_dict({"running_value": None, "running_square": 0.0})
    assert first.running_value is None and first.running_square is None
    with pytest.raises(HarpError, match="--prune-value-scale shared --prune-travel 0 --prune-move-epochs 0"):
        build_pruner("frontier", 0.99).load_state_dict(old_state)


@pytest.mark.parametrize("options, word", [({"rate_step": -1}, "rate_step"), ({"boundary_width": 0}, "boundary_width"),
                                           ({"value_decay": 1.0}, "value_decay"), ({"alpha": 1.0}, "alpha"),
                                           ({"init_strategy": "nope"}, "nope"), ({"gamma0": 0.1}, "gamma0"),
                                           ({"value_scale": "nope"}, "value_scale"), ({"travel": 0.5}, "travel"),
                                           ({"move_epochs": -1}, "move_epochs"), ({"move_epochs": 1.5}, "move_epochs")])
def test_bad_options_name_themselves(options, word):
    with pytest.raises(HarpError, match=word):
        build_pruner("frontier", 0.99, **options)
