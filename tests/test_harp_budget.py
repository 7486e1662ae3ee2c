"""harp (the default) meets any budget while it learns, keeps every layer alive, and its rates never stop
responding to the size loss; the final projection keeps the learned allocation's order and proportions.

Each test fails on the paper's mechanics (``harp-paper``): there the budget at 99.9 % is met, if ever, by the
projection after pruning, saturated rates no longer move, and the common logit shift reorders layers."""

import copy

import pytest
import torch

from harp_prune.attacks import PGD
from harp_prune.data import make_loader, make_splits
from harp_prune.evaluation import budget_line
from harp_prune.models import build_model
from harp_prune.pruning import HarpPaperPruner, HarpPruner, WeightMask, build_pruner
from harp_prune.training import PGDAT
from harp_prune.training.loop import train_epoch


def _prune(model: torch.nn.Module, pruner, data, epochs: int) -> list[dict]:
    """Run ``epochs`` PGD-AT pruning epochs; returns, per step, the kept count and each layer's count."""
    pruner.attach(model)
    optimizer = torch.optim.SGD(pruner.trainable_parameters(model), lr=0.1, momentum=0.9)
    loader = make_loader(make_splits(data, 0.0, seed=0).train, 64, True, seed=0)
    pruner.plan(epochs, len(loader))
    trace = []

    def after_step() -> None:
        pruner.after_step()
        trace.append({"kept": [layer.kept() for layer in pruner.layers]})

    for epoch in range(epochs):
        train_epoch(model, loader, optimizer, PGDAT(PGD(0.1, 0.025, 2)), torch.device("cpu"),
                    penalty=lambda epoch=epoch: pruner.penalty(epoch), after_step=after_step, show_progress=False)
        pruner.end_epoch(epoch)
    return trace


@pytest.mark.parametrize("sparsity,epochs", [(0.9, 2), (0.99, 2), (0.999, 2), (0.999, 3), (0.999, 10)])
def test_harp_meets_its_budget_during_pruning_and_keeps_every_layer(trained_model, tiny_data, sparsity, epochs):
    pruner = HarpPruner(sparsity)
    trace = _prune(copy.deepcopy(trained_model), pruner, tiny_data, epochs)
    total = sum(layer.numel for layer in pruner.layers)
    target = round((1 - sparsity) * total)
    steps_per_epoch = len(trace) // epochs
    # from the end of the ramp (half the steps) every step is on budget, well before the last epoch ends
    on_budget = [abs(sum(row["kept"]) - target) <= max(1, int(0.005 * target)) for row in trace]
    assert all(on_budget[pruner.ramp_steps - 1:]) and pruner.ramp_steps <= (epochs - 1) * steps_per_epoch
    assert pruner.ready
    assert all(min(row["kept"]) >= 1 for row in trace)
    if sparsity == 0.999:  # the allocation is learned, not uniform: the keep-ratios at the end differ > 2x
        ratios = [count / layer.numel for count, layer in zip(trace[-1]["kept"], pruner.layers, strict=True)]
        assert max(ratios) > 2 * min(ratios)
    # on budget already: the projection at most nudges the rates to the closest count
    assert abs(pruner.finalize()) < 0.05 and abs(sum(layer.kept() for layer in pruner.layers) - target) <= 1


def test_the_paper_mechanics_do_not_meet_that_budget_while_pruning(trained_model, tiny_data):
    # the contrast the test above exists for: the same run with harp-paper is far over budget at its end
    pruner = HarpPaperPruner(0.999, gamma0=0.05)
    trace = _prune(copy.deepcopy(trained_model), pruner, tiny_data, 2)
    total = sum(layer.numel for layer in pruner.layers)
    assert sum(trace[-1]["kept"]) > 2 * round(0.001 * total)


def _saturated(method: str, sparsity: float = 0.999) -> tuple[torch.nn.Module, list[WeightMask], object]:
    """small_cnn with the kind of learned state that killed 99.9 % runs: the first conv at 100 %, the others
    spread over [0.4 %, 13 %], eight times the budget in all."""
    torch.manual_seed(0)
    model = build_model("small_cnn", (1, 28, 28), 10, [0.5], [0.25])
    pruner = build_pruner(method, sparsity, gamma0=0.1) if method == "harp-paper" else build_pruner(method, sparsity)
    pruner.attach(model)
    for layer, ratio in zip(pruner.layers, [1.0, 0.128, 0.004, 0.02], strict=True):
        with torch.no_grad():
            layer.rate.fill_(layer.rate_for(ratio))
    return model, pruner.layers, pruner


@pytest.mark.parametrize("method", ["harp", "harp-paper"])
def test_projection_keeps_order_and_proportions_and_never_empties_a_layer(method):
    _, layers, pruner = _saturated(method)
    before = [float(layer.keep_ratio()) for layer in layers]
    learned_count = sum(int(layer.mask().sum()) for layer in layers)  # counted from the masks themselves
    pruner.finalize()
    after = [layer.kept() / layer.numel for layer in layers]
    total = sum(layer.numel for layer in layers)
    assert abs(sum(layer.kept() for layer in layers) - round(0.001 * total)) <= 1
    assert all(layer.kept() >= 1 for layer in layers)
    order = sorted(range(len(layers)), key=lambda i: before[i])
    assert sorted(range(len(layers)), key=lambda i: after[i]) == order
    # one factor for every layer, up to the rounding to whole weights (one per layer, spread by the total)
    learned = [b * layer.numel for b, layer in zip(before, layers, strict=True)]
    factor = sum(layer.kept() for layer in layers) / sum(learned)
    for count, layer in zip(learned, layers, strict=True):
        assert abs(layer.kept() - factor * count) <= 2.0
    report = pruner.budget_report()
    total = sum(layer.numel for layer in layers)
    realised = sum(layer.kept() for layer in layers)
    assert report["learned"] == learned_count / total and report["realised"] == realised / total
    factor = learned_count / total / 0.001
    assert report["warning"].startswith(f"the learned masks kept {factor:.3g}× the weight budget")
    assert "warning: the learned masks kept" in budget_line(report)


def test_a_common_logit_shift_on_saturated_sigmoid_rates_breaks_the_proportions():
    # why finalize does not shift sigmoid logits: the layer at 100 % keeps nearly all, the others take the cut
    from harp_prune.pruning import project_to_budget

    _, layers, _ = _saturated("harp-paper")
    before = [float(layer.keep_ratio()) for layer in layers]
    project_to_budget(layers, 0.001)
    after = [layer.kept() / layer.numel for layer in layers]
    assert after[1] / before[1] < 0.5 * (after[0] / before[0])


def _one_step(gamma: float, ratio: float = 0.01) -> list[float]:
    """The rates after one harp step from a layer state with fixed mask gradients, at price γ."""
    torch.manual_seed(0)
    model = build_model("small_cnn", (1, 28, 28), 10, [0.5], [0.25])
    pruner = HarpPruner(0.999, init_strategy="uniform", travel=0)  # a uniform prior moves every layer alike
    pruner.attach(model)
    pruner.plan(1, 100)
    pruner.gamma = gamma
    for index, layer in enumerate(pruner.layers):
        with torch.no_grad():
            layer.rate.fill_(layer.rate_for(ratio if index == 3 else 0.01))
        layer.mask()  # ranks the scores, as the forward pass does
        # the classifier's next weights are worth 3e-3 each; the other layers' 1e-3
        layer.scores.grad = -torch.sign(layer.scores.detach()) * (3e-3 if index == 3 else 1e-3)
    before = [float(layer.rate) for layer in pruner.layers]
    pruner.after_step()
    return [float(layer.rate) - start for layer, start in zip(pruner.layers, before, strict=True)]


def test_a_rate_still_moves_when_gamma_doubles():
    kept = 0.001 * sum(layer.numel for layer in HarpPruner(0.999).attach(
        build_model("small_cnn", (1, 28, 28), 10, [0.5], [0.25])).values())
    low, high = _one_step(2e-3 * kept), _one_step(4e-3 * kept)  # prices per weight 2e-3 and 4e-3
    # at 2e-3 the classifier's weights (3e-3) are worth their price and it grows against the others; at 4e-3
    # nothing is, and it keeps pace with them: γ changed the step
    assert low[3] - low[0] > 0.01
    assert high[3] - high[0] == pytest.approx(0.0, abs=1e-6)


def test_a_rate_at_its_floor_still_rises_when_its_weights_are_worth_their_price():
    steps = _one_step(2e-3 * 0.001 * 162_552, ratio=1e-7)  # the classifier at its floor a_min
    assert steps[3] > steps[0] + 0.01


def test_the_paper_sigmoid_rate_at_its_floor_gets_no_gradient():
    # the saturation harp removes: a logit that learning drove far down (the 99.9 % runs left logits as low as
    # -183) has a sigmoid slope of 0, whatever γ; harp's log keep-ratio has slope a there (a_min = 1e-4)
    _, layers, _ = _saturated("harp-paper")
    with torch.no_grad():
        layers[3].rate.fill_(-30.0)
    slope = torch.autograd.grad(layers[3].keep_ratio(), layers[3].rate)[0]
    assert float(slope) < 1e-9 * float(torch.autograd.grad(layers[1].keep_ratio(), layers[1].rate)[0])
