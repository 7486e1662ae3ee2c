"""harp-channel through the pipeline: prune and fine-tune on real images, reload, export slim."""

from __future__ import annotations

import pytest
import torch

from harp_prune.export import slim_model
from harp_prune.pipeline import evaluate, finetune, prepare, pretrain, prune
from harp_prune.pruning import sparsity_report
from harp_prune.training import load_model


@pytest.mark.slow
def test_channel_pipeline_meets_the_budget_and_slims(tiny_config, tiny_splits, test_batch, capsys):
    config = tiny_config
    config.prune.method = "harp-channel"
    config.prune.sparsity = 0.5
    config.finetune.epochs = 1
    ctx = prepare(config, tiny_splits)
    pretrain(config, ctx=ctx)
    capsys.readouterr()
    prune(config, ctx=ctx)
    finetune(config, ctx=ctx)
    model, pruner, checkpoint = load_model(ctx.out_dir / "finetune" / "final.pt")
    assert checkpoint["pruning"]["method"] == "harp-channel"
    assert checkpoint["pruning"]["input_shape"] == [1, 28, 28]
    flops, budget = pruner.realised()["flops"], pruner.budget / pruner.cost.dense("flops")
    assert flops <= budget + 1e-9
    # every report shows the budgeted quantity (FLOPs for a channel target) beside the weight sparsity
    weight_sparsity = sparsity_report(model).sparsity
    logged = capsys.readouterr().out
    assert f"flops kept {flops:.5f} of dense (budget {budget:.5f}), weight sparsity {weight_sparsity:.5f}" in logged
    assert "(--sparsity 0.5 of channels)" in logged
    assert checkpoint["budget"]["realised"] == pytest.approx(flops)
    assert evaluate(config, ctx=ctx)["budget"] == checkpoint["budget"]
    x = test_batch[0][:16]
    model.eval()
    with torch.no_grad():
        expected = model(x)
        slim, _ = slim_model(model, (1, 28, 28))
        torch.testing.assert_close(slim(x), expected, rtol=1e-4, atol=1e-4)
