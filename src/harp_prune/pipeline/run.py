"""``run``: all three stages and the dense-vs-pruned evaluation, with ``results.json``, ``summary.md`` and the
report page."""

from __future__ import annotations

import time
from typing import Any

from torch import nn

from harp_prune import distributed
from harp_prune.config import RunConfig
from harp_prune.data import Splits
from harp_prune.evaluation import comparison_table, layer_table
from harp_prune.files import write_atomic
from harp_prune.pipeline.components import STAGES, prepare
from harp_prune.pipeline.evaluation import evaluate
from harp_prune.pipeline.stages import finetune, pretrain, prune
from harp_prune.progress import log
from harp_prune.report import write_report_if_plotting
from harp_prune.results import environment, write_json


def run(config: RunConfig, *, model: nn.Module | None = None, splits: Splits | None = None,
        resume: bool = False) -> dict[str, Any]:
    """All stages, then dense-vs-pruned evaluation; writes ``results.json``, ``summary.md`` and, with matplotlib,
    ``report.html``.

    :param config: the run's settings (``build_config``).
    :param model: any ``nn.Module`` on [0, 1] images, replacing the zoo model. **It is changed in place**: trained,
        given masks (parametrizations) and fine-tuned, so after the call it *is* the pruned model; pass
        ``copy.deepcopy(model)`` to keep the original.
    :param splits: your own data (``Splits``; ``validation_split`` carves a validation part), replacing the
        configured data set. Your data needs ``attack.eps`` and ``attack.step_size`` set.
    :param resume: take stages finished earlier with the same settings from their checkpoints.
    :returns: the results (``results.json``): ``dense`` and ``pruned`` evaluation records, ``history`` per stage,
        the config and its provenance.

    Example::

        import harp_prune as hp
        results = hp.run(hp.build_config(prune={"sparsity": 0.99}, pretrain={"epochs": 2}))
        print(results["pruned"]["robust_acc"])
    """
    started = time.perf_counter()
    ctx = prepare(config, splits, model=model, resume_stages=STAGES if resume else ())
    log(f"harp run: {type(model).__name__ if model is not None else config.model} on {ctx.dataset_name} "
        f"({len(ctx.train_loader.dataset)} train, {len(ctx.select_loader.dataset)} selection, "
        f"{len(ctx.test_loader.dataset)} test), "
        f"{config.prune.method} to sparsity {config.prune.sparsity}, device {ctx.device}, out {ctx.out_dir}")
    dense = pretrain(config, model=model, resume=resume, ctx=ctx)
    dense_eval = evaluate(config, model=dense.model, ctx=ctx)
    pruned = prune(config, model=dense.model, resume=resume, ctx=ctx)
    tuned = finetune(config, model=pruned.model, pruner=pruned.pruner, resume=resume, ctx=ctx)
    pruned_eval = evaluate(config, model=tuned.model, ctx=ctx, budget=tuned.budget)
    results = {
        "config": config.to_dict(), "provenance": {k: v for k, v in config.provenance.items() if v != "default"},
        "dense": dense_eval, "pruned": pruned_eval,
        "history": {outcome.stage: outcome.history for outcome in (dense, pruned, tuned)},
        "wall_seconds": time.perf_counter() - started, "environment": environment(),
    }
    write_json(results, ctx.out_dir / "results.json")
    summary = summarize(results)
    log(summary)
    if distributed.is_main():
        write_atomic(ctx.out_dir / "summary.md", summary + "\n")
        write_report_if_plotting(ctx.out_dir)
    return results


def summarize(results: dict[str, Any]) -> str:
    table = comparison_table({"dense": results["dense"], "pruned": results["pruned"]})
    if warning := (results["pruned"].get("budget") or {}).get("warning"):
        table += f"\n\nwarning: {warning}"
    return (f"## dense vs pruned ({results['config']['prune']['method']}, "
            f"{results['pruned']['examples']} test images, eps {results['pruned']['eps']:.4g})\n\n{table}\n\n"
            f"## per-layer keep-ratios of the pruned model\n\n{layer_table(results['pruned'])}\n\n"
            f"wall time: {results['wall_seconds']:.0f} s")
