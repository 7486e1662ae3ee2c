"""`harp compare`: HARP against its baselines at several sparsities, from one adversarially pre-trained model.

Every cell (method x sparsity x seed) goes through the same pipeline functions as `harp run`
(``pipeline.prune``, ``pipeline.finetune``, ``pipeline.evaluate``) with its own out dir and a config derived
from the user's (``grid.py``): same data split, attack, epochs, learning rates and seeds for
every method. The dense model (``<out_dir>/pretrain/final.pt``), its evaluation and every finished cell
(``cells/<method>/sparsity-<s>/seed-<n>/result.json``, written atomically) are cached, and an unfinished
stage continues from its last epoch, so rerunning the same command resumes where it stopped. A cached
result made under different settings is refused rather than mixed in.

Outputs in ``<out_dir>``: ``compare.json`` (all numbers), ``compare.md`` (tables, ``report.py``) and, with
matplotlib, ``report.html`` with ``accuracy_vs_sparsity.png`` and ``layer_keep_ratios.png``
(``harp_prune.report``). ``cells.py`` runs the cells.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from harp_prune.compare.cells import run_cell, run_cells
from harp_prune.compare.grid import PRETRAIN_KEYS, Cell, cell_config, check_cache, grid
from harp_prune.compare.report import cell_entry, markdown, strategy_densities, summarize_cells
from harp_prune.config import RunConfig
from harp_prune.data import Splits
from harp_prune.pipeline import evaluate, prepare, pretrain, validate_run
from harp_prune.progress import log
from harp_prune.report import write_report_if_plotting
from harp_prune.results import environment, write_json
from harp_prune.training import load_checkpoint

__all__ = ["Cell", "cell_config", "compare", "grid", "markdown", "run_cell", "summarize_cells"]


def compare(config: RunConfig, splits: Splits | None = None) -> dict[str, Any]:
    """Run (or resume) the whole grid and write compare.json, compare.md and the report; returns the results.

    ``splits`` replaces the configured data set (as in ``pipeline.run``); every cell uses the same split.
    """
    started = time.perf_counter()
    cells = grid(config)
    root = Path(config.out_dir)
    source = root / "pretrain" / "final.pt"
    for cell in cells:  # before pre-training: every cell must be able to run
        validate_run(cell_config(config, cell, source, root))
    ctx = prepare(config, splits, check_pruner=False)  # the cells' configs name the pruners
    log(f"harp compare: {config.model} on {ctx.splits.info.name}, {len(cells)} cells "
        f"({config.compare.methods} at {config.compare.sparsities}, seeds {config.compare.seeds}), out {root}")
    if source.exists():
        check_cache(load_checkpoint(source)["config"], config, PRETRAIN_KEYS, source)
    dense = pretrain(config, resume=True, ctx=ctx).model
    dense_json = root / "dense.json"

    def evaluate_dense() -> dict[str, Any]:
        cached = json.loads(dense_json.read_text()) if dense_json.exists() else {}
        if cached.get("evaluate") == config.to_dict()["evaluate"]:
            return cached["evaluation"]
        evaluation = evaluate(config, model=dense, ctx=ctx)
        write_json({"evaluation": evaluation, "evaluate": config.to_dict()["evaluate"]}, dense_json)
        return evaluation

    finished, dense_eval = run_cells(config, cells, root, source, ctx.splits, meanwhile=evaluate_dense)
    sparsities = sorted({cell.sparsity for cell in cells})
    results = {
        "config": config.to_dict(), "dense": dense_eval, "summary": summarize_cells(finished),
        "strategies": strategy_densities(dense, sparsities),
        "cells": [cell_entry(c) for c in finished],
        "wall_seconds": time.perf_counter() - started, "environment": environment(),
    }
    write_json(results, root / "compare.json")
    table = markdown(results)
    (root / "compare.md").write_text(table + "\n")
    log(table)
    write_report_if_plotting(root)
    return results
