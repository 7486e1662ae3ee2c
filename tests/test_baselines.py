"""The baseline pruners of `harp compare`: realised densities, what each trains, and the layer strategies."""

from __future__ import annotations

import copy

import pytest
import torch

from harp_prune.attacks import PGD
from harp_prune.data import make_loader
from harp_prune.errors import HarpError
from harp_prune.pruning import (
    PRUNERS,
    build_pruner,
    erk_densities,
    lamp_densities,
    masked_layers,
    rebuild_pruner,
    size_loss,
    sparsity_report,
    wrap_model,
)
from harp_prune.training import PGDAT
from harp_prune.training.loop import train_epoch

BASELINES = ["hydra", "rates-only", "lwm", "global-magnitude", "lamp", "erk", "random"]


@pytest.mark.parametrize("method", BASELINES)
@pytest.mark.parametrize("sparsity", [0.9, 0.99, 0.999])
def test_pruner_realises_target_density(trained_model, method, sparsity):
    model = copy.deepcopy(trained_model)
    pruner = build_pruner(method, sparsity, **({"seed": 3} if method == "random" else {}))
    pruner.attach(model)
    pruner.finalize()
    report = sparsity_report(model)
    target = round((1 - sparsity) * report.total)
    # per-layer rounding (or the one-weight floor per layer) may move the count by at most one per layer
    assert abs(report.kept - target) <= len(report.layers), (method, report.kept, target)
    assert all(layer.kept >= 1 for layer in report.layers)


def test_fixed_rate_finalize_keeps_the_strategy(trained_model):
    model = copy.deepcopy(trained_model)
    pruner = build_pruner("lamp", 0.99)
    pruner.attach(model)
    before = [layer.kept for layer in sparsity_report(model).layers]
    assert pruner.finalize() == 0.0
    assert [layer.kept for layer in sparsity_report(model).layers] == before
    layers = pruner.layers
    expected = [round(d * layer.numel) for d, layer in zip(lamp_densities(layers, 0.01), layers, strict=True)]
    assert before == expected


@pytest.mark.parametrize("strategy", [lamp_densities, erk_densities])
@pytest.mark.parametrize("density", [0.1, 0.01, 0.001])
def test_lamp_erk_hit_global_density(trained_model, strategy, density):
    layers = list(wrap_model(copy.deepcopy(trained_model)).values())
    densities = strategy(layers, density)
    assert all(0.0 < d <= 1.0 for d in densities)
    total = sum(layer.numel for layer in layers)
    kept = sum(d * layer.numel for d, layer in zip(densities, layers, strict=True))
    assert kept == pytest.approx(density * total, abs=len(layers))
    assert len(set(densities)) > 1  # genuinely non-uniform on small_cnn


def test_erk_caps_small_layers_and_redistributes(trained_model):
    layers = list(wrap_model(copy.deepcopy(trained_model)).values())
    densities = erk_densities(layers, 0.5)
    assert max(densities) == 1.0  # the first conv overflows and is kept dense
    total = sum(layer.numel for layer in layers)
    assert sum(d * layer.numel for d, layer in zip(densities, layers, strict=True)) == pytest.approx(0.5 * total)


def test_global_magnitude_keeps_the_largest_weights_globally(trained_model):
    model = copy.deepcopy(trained_model)
    pruner = build_pruner("global-magnitude", 0.95)
    pruner.attach(model)
    kept, dropped = [], []
    for layer in masked_layers(model).values():
        mask = layer.mask().bool()
        kept.append(layer.weight.detach().abs()[mask])
        dropped.append(layer.weight.detach().abs()[~mask])
    assert torch.cat(kept).min() >= torch.cat(dropped).max()
    total = sum(layer.numel for layer in masked_layers(model).values())
    assert sparsity_report(model).kept == round(0.05 * total)


def test_random_pruner_is_seeded(trained_model):
    masks = []
    for seed in (1, 1, 2):
        model = copy.deepcopy(trained_model)
        build_pruner("random", 0.9, seed=seed).attach(model)
        masks.append(torch.cat([m.mask().flatten() for m in masked_layers(model).values()]))
    assert torch.equal(masks[0], masks[1]) and not torch.equal(masks[0], masks[2])


def _one_pruning_step(model, pruner, tiny_splits):
    params = pruner.trainable_parameters(model)
    before = {name: (layer.scores.detach().clone(), layer.rate.detach().clone())
              for name, layer in masked_layers(model).items()}
    optimizer = torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=5e-4)
    loader = make_loader(tiny_splits.train, 64, True, seed=0)
    batches = [next(iter(loader))]
    train_epoch(model, batches, optimizer, PGDAT(PGD(0.1, 0.025, 2)), torch.device("cpu"),
                penalty=lambda: pruner.penalty(0), show_progress=False)
    return before


def test_hydra_trains_scores_not_rates(trained_model, tiny_splits):
    model = copy.deepcopy(trained_model)
    pruner = build_pruner("hydra", 0.99)
    pruner.attach(model)
    before = _one_pruning_step(model, pruner, tiny_splits)
    layers = masked_layers(model)
    assert all(torch.equal(layers[n].rate.detach(), r) for n, (_, r) in before.items())
    assert any(not torch.equal(layers[n].scores.detach(), s) for n, (s, _) in before.items())


def test_rates_only_trains_rates_not_scores(trained_model, tiny_splits):
    model = copy.deepcopy(trained_model)
    pruner = build_pruner("rates-only", 0.99, gamma0=0.1)
    pruner.attach(model)
    before = _one_pruning_step(model, pruner, tiny_splits)
    layers = masked_layers(model)
    assert all(torch.equal(layers[n].scores.detach(), s) for n, (s, _) in before.items())
    assert any(not torch.equal(layers[n].rate.detach(), r) for n, (_, r) in before.items())


def test_layer_bounds_clamp_harp_keep_ratios_and_keep_gradients(trained_model):
    model = copy.deepcopy(trained_model)
    pruner = build_pruner("harp-paper", 0.99, min_layer_density=0.002, max_layer_density=0.05)
    pruner.attach(model)
    layers = pruner.layers
    with torch.no_grad():
        for layer in layers:
            layer.rate.fill_(40.0 if layer is layers[0] else -40.0)
    ratios = [float(layer.keep_ratio().detach()) for layer in layers]
    assert ratios[0] == pytest.approx(0.05) and all(r == pytest.approx(0.002) for r in ratios[1:])
    with torch.no_grad():
        for layer in layers:
            layer.rate.zero_()
    size_loss(layers, 0.001).backward()  # inside the bounds the rate still gets a gradient
    assert all(layer.rate.grad is not None and float(layer.rate.grad) > 0 for layer in layers)
    pruner.finalize()
    for layer in sparsity_report(model).layers:
        assert 0.002 - 1 / layer.numel <= layer.density <= 0.05 + 1 / layer.numel


def test_layer_bounds_must_admit_the_target():
    with pytest.raises(HarpError, match="outside the per-layer bounds"):
        build_pruner("harp", 0.99, min_layer_density=0.05)


def test_every_baseline_is_registered():
    assert set(BASELINES) <= set(PRUNERS)


@pytest.mark.parametrize("method", BASELINES)
def test_checkpoint_description_rebuilds_the_same_masks(trained_model, method):
    """What `load_model` does with a pruned checkpoint: rebuild from describe(), attach, load the state."""
    model = copy.deepcopy(trained_model)
    options = {"layer_budget": "erk", "gamma0": 0.1}
    taken = PRUNERS.get(method).takes()
    pruner = build_pruner(method, 0.99, seed=5, **{k: v for k, v in options.items() if k in taken})
    pruner.attach(model)
    pruner.finalize()
    rebuilt = rebuild_pruner(pruner.describe())
    twin = copy.deepcopy(trained_model)
    rebuilt.attach(twin)
    twin.load_state_dict(model.state_dict())
    rebuilt.adopt(twin)
    for a, b in zip(masked_layers(model).values(), masked_layers(twin).values(), strict=True):
        assert torch.equal(a.mask(), b.mask())
