"""Masks live on parameters: reused modules, tied weights, exclusions, the budget and the pruner's call order."""

import copy

import pytest
import torch
from torch import nn

from harp_prune.errors import HarpError
from harp_prune.pruning import (
    HarpPaperPruner,
    HarpPruner,
    Prunable,
    build_pruner,
    masked_layers,
    project_to_budget,
    sparsity_report,
    unwrap_model,
)


def _reused_conv_model() -> nn.Sequential:
    conv = nn.Conv2d(4, 4, 3, padding=1)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), conv, nn.ReLU(), conv, nn.Flatten(),
                         nn.Linear(4 * 6 * 6, 10))


def test_a_module_registered_twice_is_masked_at_both_uses():
    torch.manual_seed(0)
    model = _reused_conv_model()
    pruner = HarpPruner(0.9)
    pruner.attach(model)
    pruner.finalize()
    assert list(masked_layers(model)) == ["0", "2", "6"]  # the reused conv once, under its first name
    conv = model[2]
    seen = []
    conv.register_forward_hook(lambda module, inputs, output: seen.append(module.weight.detach().clone()))
    model(torch.rand(2, 1, 6, 6))
    assert len(seen) == 2
    for weight in seen:  # both uses run on the masked weight
        assert int(torch.count_nonzero(weight)) == masked_layers(model)["2"].kept()
    report = sparsity_report(model)
    assert report.total == 1 * 4 * 9 + 4 * 4 * 9 + 144 * 10  # counted once: 36 + 144 + 1440
    expected_kept = sum(int(torch.count_nonzero(m.weight)) for m in (model[0], model[2], model[6]))
    assert report.kept == expected_kept == round(pruner.density() * report.total)


def test_tied_weights_have_one_mask_counted_once_and_stay_tied_when_unwrapped():
    torch.manual_seed(0)
    first, second = nn.Linear(8, 8, bias=False), nn.Linear(8, 8)
    second.weight = first.weight
    model = nn.Sequential(first, nn.ReLU(), second, nn.ReLU(), nn.Linear(8, 3))
    pruner = HarpPruner(0.5)
    layers = pruner.attach(model)
    assert list(layers) == ["0", "4"]
    with torch.no_grad():  # different rates cannot exist: one mask object for both holders
        layers["0"].rate.fill_(-2.0)
    assert torch.equal(model[0].weight, model[2].weight)
    pruner.finalize()
    report = sparsity_report(model)
    assert report.total == 64 + 24
    x = torch.rand(5, 8)
    masked_out = model(x)
    plain = unwrap_model(copy.deepcopy(model))
    assert plain[0].weight is plain[2].weight
    assert torch.equal(plain(x), masked_out)
    assert int(torch.count_nonzero(plain[0].weight)) + int(torch.count_nonzero(plain[4].weight)) == report.kept


def test_unwrapping_a_copy_leaves_the_original_masked():
    model = _reused_conv_model()
    pruner = HarpPruner(0.9)
    pruner.attach(model)
    x = torch.rand(2, 1, 6, 6)
    before = model(x)
    unwrap_model(copy.deepcopy(model))  # parametrize deletes properties from a class the copy shares
    assert torch.equal(model(x), before)


def test_exclude_leaves_layers_dense_and_reports_them():
    model = _reused_conv_model()
    pruner = HarpPruner(0.9, prunable=Prunable(exclude=("0", "6")))
    layers = pruner.attach(model)
    assert list(layers) == ["2"]
    report = sparsity_report(model)
    assert [layer.name for layer in report.dense_layers] == ["0", "6"]
    assert report.total == 144 and report.dense_layers[1].kept == 1440
    with pytest.raises(HarpError, match="no prunable parameter"):
        HarpPruner(0.9, prunable=Prunable(exclude=("*",))).attach(_reused_conv_model())


def test_parameters_chosen_by_pattern_and_by_type():
    model = nn.Sequential(nn.Embedding(20, 6), nn.Flatten(), nn.Linear(18, 4))
    layers = HarpPruner(0.5, prunable=Prunable(include_parameters=("0.weight",))).attach(model)
    assert list(layers) == ["0", "2"]
    only_linear = HarpPruner(0.5, prunable=Prunable(layer_types=("linear",))).attach(_reused_conv_model())
    assert list(only_linear) == ["6"]
    with pytest.raises(HarpError, match="unknown prunable layer type"):
        Prunable(layer_types=("lstm",))


def test_budget_is_met_when_learned_logits_run_far_past_sixty():
    """A fixed [-60, 60] bracket stopped at its end and delivered 94.1% for a 99% target (the old bug)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(300, 200), nn.ReLU(), nn.Linear(200, 100), nn.ReLU(), nn.Linear(100, 10))
    pruner = HarpPruner(0.99)
    layers = pruner.attach(model)
    with torch.no_grad():
        for layer, rate in zip(layers.values(), (131.0, 95.0, 70.0), strict=True):
            layer.rate.fill_(rate)
    pruner.finalize()
    total = 300 * 200 + 200 * 100 + 100 * 10
    kept = sum(int(torch.count_nonzero(module.weight)) for module in (model[0], model[2], model[4]))
    assert abs(kept - round(0.01 * total)) <= max(1, int(0.005 * round(0.01 * total)))
    assert sparsity_report(model).kept == kept


def test_unreachable_budget_is_refused_not_missed():
    model = nn.Sequential(nn.Linear(10, 10), nn.Linear(10, 10))
    pruner = HarpPruner(0.5, min_layer_density=0.5)
    layers = list(pruner.attach(model).values())
    with torch.no_grad():
        for layer in layers:
            layer.min_keep = 0.9  # a floor above the target: no common shift can meet it
    with pytest.raises(HarpError, match="cannot meet the target"):
        project_to_budget(layers, 0.5)


def test_pruner_call_order_is_checked():
    pruner = HarpPruner(0.9)
    with pytest.raises(HarpError, match="attach"):
        HarpPaperPruner(0.9).penalty(0)
    with pytest.raises(HarpError, match="attach"):
        pruner.finalize()
    with pytest.raises(HarpError, match="attach"):
        pruner.end_epoch(0)
    model = _reused_conv_model()
    pruner.attach(model)
    with pytest.raises(HarpError, match="already attached"):
        pruner.attach(_reused_conv_model())
    with pytest.raises(HarpError, match="already has pruning masks"):
        HarpPruner(0.9).attach(model)
    with pytest.raises(HarpError, match="no prunable parameter"):
        HarpPruner(0.9).attach(nn.Sequential(nn.ReLU(), nn.BatchNorm1d(3)))


@pytest.mark.parametrize("options,match", [
    ({"sparsity": "abc"}, "sparsity must be a number"),
    ({"sparsity": 0.9, "rate_reach": -1.0}, "rate_reach must be > 0"),
    ({"sparsity": 1.0}, "sparsity must be in"),
    ({"sparsity": float("nan")}, "sparsity"),
])
def test_bad_pruner_arguments_are_one_line_errors(options, match):
    with pytest.raises(HarpError, match=match):
        build_pruner("harp", options.pop("sparsity"), **options)


def test_excluded_layers_appear_in_the_evaluation_and_its_table():
    from torch.utils.data import DataLoader, TensorDataset

    from harp_prune.evaluation import evaluate_model, layer_table

    torch.manual_seed(0)
    model = _reused_conv_model()
    pruner = HarpPruner(0.9, prunable=Prunable(exclude=("6",)))
    pruner.attach(model)
    pruner.finalize()
    loader = DataLoader(TensorDataset(torch.rand(8, 1, 6, 6), torch.randint(0, 10, (8,))), batch_size=4)
    result = evaluate_model(model, loader, {}, torch.device("cpu"))
    assert [layer["name"] for layer in result["dense_layers"]] == ["6"]
    assert result["prunable_weights"] == 36 + 144
    assert result["other_parameters"] == 4 + 4 + 10  # the biases
    table = layer_table(result)
    assert "| 6 (not pruned) | 1,440 | 1,440 | 100.000 |" in table
    assert "other parameters" in table
