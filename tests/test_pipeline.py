"""The three stages end to end on real images: `harp run`, the budget reached, and stage errors."""

import json

import pytest
import torch
from kept_counts import budget_kept, kept_and_total

import harp_prune as hp
from harp_prune import pipeline
from harp_prune.cli import main
from harp_prune.config import build_config
from harp_prune.errors import HarpError

TINY = ["--no-progress", "--data-train-examples", "400", "--data-test-examples", "100", "--attack-steps", "2",
        "--evaluate-pgd-steps", "3", "--pretrain-epochs", "2", "--prune-epochs", "3", "--finetune-epochs", "1",
        "--data-batch-size", "50", "--prune-ramp", "0.5"]


def test_harp_run_end_to_end(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "--out-dir", str(out), *TINY]) == 0
    results = json.loads((out / "results.json").read_text())
    pruned = results["pruned"]
    model = hp.load_model(out / "finetune" / "final.pt")[0]
    kept, total = kept_and_total(model)  # the non-zero entries of W * M after fine-tuning
    assert total == sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Conv2d | torch.nn.Linear))
    assert kept == budget_kept(total, 0.99) and pruned["kept_weights"] == kept
    assert pruned["kept_weights"] == sum(layer["kept"] for layer in pruned["layers"])
    assert results["dense"]["sparsity"] == 0.0
    assert 0.1 < pruned["natural_acc"] <= 1.0 and "pgd3" in pruned["robust_acc"]
    prune_history = results["history"]["prune"]
    assert all(row["gamma"] > 0 for row in prune_history)  # the price of a kept weight, learned
    # harp's trajectory reaches the target within the first half of the steps: on budget from epoch 2 on
    assert [row["budget_reached"] for row in prune_history] == [0.0, 1.0, 1.0]
    assert prune_history[-1]["trajectory_density"] == pytest.approx(0.01)
    assert (out / "summary.md").read_text().startswith("## dense vs pruned")
    assert "prune.ramp: command line" in (out / "config.yaml").read_text()
    printed = capsys.readouterr().out
    assert "| pruned |" in printed and "per-layer keep-ratios" in printed
    # evaluate a stage checkpoint from the CLI
    assert main(["evaluate", "--out-dir", str(out), *TINY[:9]]) == 0
    evaluated = json.loads((out / "finetune" / "final.eval.json").read_text())
    assert evaluated["sparsity"] == pytest.approx(pruned["sparsity"])


def test_prune_refuses_a_checkpoint_of_another_model(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["pretrain", "--out-dir", str(out), *TINY[:11], "--pretrain-epochs", "1"]) == 0
    code = main(["prune", "--out-dir", str(out), "--model", "small_cnn_wide", *TINY])
    error = capsys.readouterr().err
    assert code == 2 and "holds a 'small_cnn' model" in error and "--model small_cnn" in error
    assert error.count("\n") == 1


def test_missing_previous_stage_is_explained(tmp_path):
    config = build_config(cli_values={"out_dir": str(tmp_path / "empty"), "progress": False,
                                      "data.train_examples": 100, "data.test_examples": 50})
    with pytest.raises(HarpError, match="does not exist; run the stage that writes it"):
        pipeline.finetune(config)
