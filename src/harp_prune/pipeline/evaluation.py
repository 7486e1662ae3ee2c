"""The evaluation a config asks for: natural and robust accuracy under ``evaluate.attacks`` and the eps sweep."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from harp_prune import distributed
from harp_prune.config import RunConfig
from harp_prune.evaluation.benchmark import evaluation_record, sweep_loader
from harp_prune.evaluation.sanity import parse_multiples
from harp_prune.pipeline.components import evaluation_attacks
from harp_prune.pipeline.runtime import Context
from harp_prune.pipeline.stages import source_model, stage_context


def sanity_section(config: RunConfig, model: nn.Module, loader: DataLoader, device: torch.device,
                   seed: int | None = None) -> dict[str, Any]:
    """The configured eps sweep (``evaluation.sweep_loader``): PGD robust accuracy over eps multiples on a spread
    subset of the test split, with warnings; with a ``seed`` the same for any number of torchrun processes."""
    a, e = config.attack, config.evaluate
    return sweep_loader(model, loader, device, a.eps, a.step_size, a.norm, parse_multiples(e.eps_sweep or ""),
                        e.pgd_steps, e.sanity_examples, config.data.eval_batch_size, seed)


def evaluate(config: RunConfig, *, model: nn.Module | None = None, splits=None,
             checkpoint: str | Path | None = None, ctx: Context | None = None,
             budget: dict[str, Any] | None = None) -> dict[str, Any]:
    """Natural and robust accuracy (``evaluate.attacks``, default PGD-k) on the test split, their point-wise
    worst case, balanced accuracy, counted sparsity and the eps-sweep sanity check; returns JSON-ready data
    (``evaluation.evaluation_record``, as ``harp_prune.evaluate_robustness`` for any model).
    ``budget`` is the pruner's ``budget_report()`` for a given ``model`` (a loaded checkpoint brings its own).
    Without ``model`` the checkpoint (``checkpoint``, ``evaluate.checkpoint`` or ``finetune/final.pt``) is read.

    Example::

        record = hp.evaluate(hp.build_config(out_dir="runs/api", evaluate={"attacks": "pgd20,autoattack"}))
        print(record["natural_acc"], record["robust_acc"], record["flags"])
    """
    ctx = stage_context(config, ctx, splits, model, record_config=False)
    if model is None:
        path = Path(checkpoint or config.evaluate.checkpoint or ctx.out_dir / "finetune" / "final.pt")
        model, pruner, _ = source_model(ctx, path, None)
        budget = pruner.budget_report() if pruner is not None else None
    model = model.to(ctx.device)
    a, e = config.attack, config.evaluate
    return evaluation_record(
        model, ctx.test_loader, evaluation_attacks(config, ctx.out_dir / "autoattack"), ctx.device, eps=a.eps,
        step_size=a.step_size, norm=a.norm, seed=config.seed, dataset=ctx.dataset_name,
        sweep=parse_multiples(e.eps_sweep) if e.eps_sweep else None, sweep_steps=e.pgd_steps,
        sweep_examples=e.sanity_examples, batch_size=config.data.eval_batch_size,
        show_progress=config.progress and distributed.is_main(), budget=budget)
