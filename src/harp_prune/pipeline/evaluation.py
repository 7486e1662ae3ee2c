"""The evaluation a config asks for: natural and robust accuracy under ``evaluate.attacks`` and the eps sweep."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from harp_prune import distributed
from harp_prune.config import RunConfig
from harp_prune.evaluation import evaluate_model
from harp_prune.evaluation.chunks import Split, evaluate_in_chunks
from harp_prune.evaluation.sanity import parse_multiples, spread_subset, sweep_hits, sweep_report
from harp_prune.evaluation.suite import evaluation_rng, threat_model
from harp_prune.pipeline.components import evaluation_attacks
from harp_prune.pipeline.runtime import Context
from harp_prune.pipeline.stages import source_model, stage_context
from harp_prune.progress import log


def sanity_section(config: RunConfig, model: nn.Module, loader: DataLoader, device: torch.device,
                   seed: int | None = None) -> dict[str, Any]:
    """PGD robust accuracy over eps multiples on a spread subset of the test split, with warnings.

    The subset is cut into chunks of ``data.eval_batch_size`` that torchrun ranks share out; with a ``seed``
    the figures are the same for any number of processes.
    """
    a, e = config.attack, config.evaluate
    split = Split.of(loader)
    multiples = parse_multiples(e.eps_sweep or "")
    was_training = model.training
    model.eval()
    try:
        hits = evaluate_in_chunks(
            split, spread_subset(len(split), e.sanity_examples), config.data.eval_batch_size,
            lambda start, images, labels: sweep_hits(model, images.to(device), labels.to(device), a.eps,
                                                     a.step_size, a.norm, multiples, e.pgd_steps, seed, start))
    finally:
        model.train(was_training)
    return sweep_report(torch.cat(hits, dim=1), a.eps, a.norm, multiples, e.pgd_steps)


def evaluate(config: RunConfig, *, model: nn.Module | None = None, splits=None,
             checkpoint: str | Path | None = None, ctx: Context | None = None,
             budget: dict[str, Any] | None = None) -> dict[str, Any]:
    """Natural and robust accuracy (``evaluate.attacks``, default PGD-k) on the test split, their point-wise
    worst case, balanced accuracy, counted sparsity and the eps-sweep sanity check; returns JSON-ready data.
    ``budget`` is the pruner's ``budget_report()`` for a given ``model`` (a loaded checkpoint brings its own)."""
    ctx = stage_context(config, ctx, splits, model, record_config=False)
    if model is None:
        path = Path(checkpoint or config.evaluate.checkpoint or ctx.out_dir / "finetune" / "final.pt")
        model, pruner, _ = source_model(ctx, path, None)
        budget = pruner.budget_report() if pruner is not None else None
    model = model.to(ctx.device)
    attacks = evaluation_attacks(config, ctx.out_dir / "autoattack")
    # the attacks' random starts depend on the config alone, not on what ran before (a resumed run skips
    # stages), and leave the caller's random stream as it was
    with evaluation_rng(config.seed, ctx.device):
        result = evaluate_model(model, ctx.test_loader, attacks, ctx.device,
                                config.progress and distributed.is_main())
        if config.evaluate.eps_sweep:
            result["sanity"] = sanity_section(config, model, ctx.test_loader, ctx.device)
    result.update({"dataset": ctx.dataset_name, "eps": config.attack.eps, "norm": config.attack.norm,
                   "threat_model": threat_model(config.attack.norm), "clean_acc": result["natural_acc"],
                   "n_examples": result["examples"], "seed": config.seed, "budget": budget})
    if "sanity" in result:
        result["flags"] += [f"sanity: {w}" for w in result["sanity"]["warnings"]]
        for warning in result["sanity"]["warnings"]:
            log(f"[evaluate] warning: {warning}")
    return result
