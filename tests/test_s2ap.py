"""S2AP, the score-space sharpness option of every method that learns scores: the step's gradients are taken at
the perturbed scores, the scores are put back exactly, and methods without learned scores refuse it."""

from __future__ import annotations

import copy

import pytest
import torch

from harp_prune.data import make_loader
from harp_prune.errors import HarpError
from harp_prune.pruning import build_pruner, perturb_scores
from harp_prune.training import Natural
from harp_prune.training.loop import train_epoch


def _one_batch(splits):
    return next(iter(make_loader(splits.train, 64, shuffle=False, seed=0)))


@pytest.mark.parametrize("method, options", [("hydra", {"layer_budget": "lamp"}), ("harp", {}), ("frontier", {})])
def test_step_uses_the_gradient_at_the_perturbed_scores(trained_model, tiny_splits, method, options):
    rho, lr = 0.2, 0.5
    images, labels = _one_batch(tiny_splits)
    loader = [(images, labels)]
    # the loop's S2AP step
    model = copy.deepcopy(trained_model)
    pruner = build_pruner(method, 0.99, s2ap_rho=rho, **options)
    pruner.attach(model)
    params = pruner.trainable_parameters(model)
    train_epoch(model, loader, torch.optim.SGD(params, lr=lr), Natural(), torch.device("cpu"),
                penalty=lambda: pruner.penalty(0), perturb=pruner.perturb_scores, show_progress=False)
    # by hand: g at S, S' = S + rho ||S_l|| g_l / ||g_l||, the gradient G' at S', then S - lr G'
    twin = copy.deepcopy(trained_model).train()  # train_epoch trains in train mode (BatchNorm)
    reference = build_pruner(method, 0.99, s2ap_rho=rho, **options)
    reference.attach(twin)
    reference.trainable_parameters(twin)
    start = [layer.scores.detach().clone() for layer in reference.layers]

    def loss():
        value = torch.nn.functional.cross_entropy(twin(images), labels)
        penalty = reference.penalty(0)
        return value + penalty if penalty is not None else value

    grads = torch.autograd.grad(loss(), [layer.scores for layer in reference.layers])
    with torch.no_grad():
        for layer, grad in zip(reference.layers, grads, strict=True):
            layer.scores.add_(rho * layer.scores.norm() * grad / grad.norm())
    perturbed = torch.autograd.grad(loss(), [layer.scores for layer in reference.layers])
    moved = 0
    for layer, original, grad, expected in zip(pruner.layers, start, perturbed, grads, strict=True):
        torch.testing.assert_close(layer.scores.detach(), original - lr * grad, rtol=1e-5, atol=1e-7)
        moved += int(not torch.allclose(grad, expected))
    assert moved > 0, "the perturbation changed no layer's gradient: the test would not see S2AP"


def test_the_perturbed_pass_leaves_batchnorm_statistics_alone(trained_model, tiny_splits):
    images, labels = _one_batch(tiny_splits)
    stats = []
    for rho in (0.0, 0.2):  # one step without and one with S2AP: the same running statistics afterwards
        model = copy.deepcopy(trained_model)
        pruner = build_pruner("hydra", 0.99, s2ap_rho=rho)
        pruner.attach(model)
        train_epoch(model, [(images, labels)], torch.optim.SGD(pruner.trainable_parameters(model), lr=0.5),
                    Natural(), torch.device("cpu"), perturb=pruner.perturb_scores, show_progress=False)
        norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        assert norms, "the test model has no BatchNorm: this test would not see anything"
        stats.append([(m.running_mean.clone(), m.running_var.clone(), int(m.num_batches_tracked)) for m in norms])
    for (mean, var, tracked), (mean2, var2, tracked2) in zip(*stats, strict=True):
        assert torch.equal(mean, mean2) and torch.equal(var, var2) and tracked == tracked2


def test_scores_are_restored_exactly(trained_model, tiny_splits):
    model = copy.deepcopy(trained_model)
    pruner = build_pruner("hydra", 0.99, s2ap_rho=0.5)
    pruner.attach(model)
    images, labels = _one_batch(tiny_splits)
    torch.nn.functional.cross_entropy(model(images), labels).backward()
    before = [layer.scores.detach().clone() for layer in pruner.layers]
    restore = perturb_scores(pruner.layers, 0.5)
    assert restore is not None
    assert any(not torch.equal(layer.scores, b) for layer, b in zip(pruner.layers, before, strict=True))
    restore()
    assert all(torch.equal(layer.scores, b) for layer, b in zip(pruner.layers, before, strict=True))


def test_off_by_default_and_without_gradients(trained_model):
    model = copy.deepcopy(trained_model)
    pruner = build_pruner("harp", 0.99)
    pruner.attach(model)
    assert pruner.perturb_scores() is None
    assert perturb_scores(pruner.layers, 0.1) is None  # no backward pass yet


@pytest.mark.parametrize("method", ["lamp", "lwm", "global-magnitude", "one-shot"])
def test_methods_without_learned_scores_refuse_it(method):
    with pytest.raises(HarpError, match="s2ap_rho"):
        build_pruner(method, 0.99, s2ap_rho=0.1)


def test_rates_only_refuses_it_because_its_scores_are_frozen():
    with pytest.raises(HarpError, match="does not train its scores"):
        build_pruner("rates-only", 0.99, s2ap_rho=0.1)


def test_negative_rho_is_refused():
    with pytest.raises(HarpError, match="s2ap_rho must be >= 0"):
        build_pruner("hydra", 0.99, s2ap_rho=-0.1)
