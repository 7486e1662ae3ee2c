"""Running the cells of the grid: each prunes, fine-tunes and evaluates from the one pre-trained model, in this
process or in a pool of worker processes; a finished cell's ``result.json`` is its cache."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import multiprocessing
import os
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any, TypeVar

import torch

from harp_prune import pipeline
from harp_prune.compare.grid import CELL_KEYS, Cell, cell_config, check_cache, not_taken
from harp_prune.config import RunConfig
from harp_prune.data import Splits
from harp_prune.errors import HarpError
from harp_prune.pipeline.components import method_options
from harp_prune.progress import log
from harp_prune.pruning.registry import PRUNERS, recorded_options
from harp_prune.registry import build_options
from harp_prune.results import environment, write_json

T = TypeVar("T")


def reached_epoch(history: list[dict[str, Any]]) -> int | None:
    """1-based epoch at whose end the budget was first met (HARP's γ freeze), None if never or not learned."""
    for row in history:
        if row.get("budget_reached", 0.0) >= 1.0:
            return int(row["epoch"]) + 1
    return None


def check_cached_options(recorded: dict[str, Any] | None, config: RunConfig, what: Path) -> None:
    """Refuse a cached cell whose method ran with other option values than ``config``'s method would.

    A config records only the options someone set, so a method default changed since (frontier's value_scale,
    for one) passes ``check_cache`` and would put an old method's figures in a new table. The cell's pruner
    record has every option's value; options added since it was written count at their legacy value.
    """
    if not recorded:
        return
    options_type = PRUNERS.get(config.prune.method).factory.Options
    made = dataclasses.asdict(build_options(options_type, recorded_options(recorded), f"{what}'s pruner record"))
    now = dataclasses.asdict(method_options(config))
    changed = [f"{key}={made[key]}, now {now[key]}" for key in now if made[key] != now[key]]
    if changed:
        raise HarpError(f"{what} was made with other {config.prune.method} options ({'; '.join(changed)}); "
                        "use another --out-dir or delete it to recompute")


def check_cached_cell(result: dict[str, Any], config: RunConfig, method: str, what: Path) -> None:
    """Refuse a cached cell made under other settings than ``config``'s (the cell's own config).

    With the cell's pruner record, the method's options are compared by their effective values
    (``check_cached_options``), so a cell made with ``--prune-travel 3`` is the cell asked for with the
    default 3; the rest of the settings as recorded. An older record without it: every setting as recorded.
    """
    recorded = result.get("pruning")
    method_keys = tuple(f"prune.{key}" for key in PRUNERS.option_owners()) if recorded else not_taken(method)
    check_cache(result["config"], config, CELL_KEYS, what, ignore=method_keys)
    check_cached_options(recorded, config, what)


def run_cell(config: RunConfig, cell: Cell, root: Path, source: Path, splits: Splits) -> dict[str, Any]:
    """Prune, fine-tune and evaluate one cell, or return its cached result."""
    done = cell.path(root) / "result.json"
    cfg = cell_config(config, cell, source, root)
    if done.exists():
        result = json.loads(done.read_text())
        check_cached_cell(result, cfg, cell.method, done)
        log(f"[compare] {cell.label} at sparsity {cell.sparsity:g}, seed {cell.seed}: finished earlier ({done})")
        return result
    log(f"[compare] {cell.label} at sparsity {cell.sparsity:g}, seed {cell.seed}")
    started = time.perf_counter()
    ctx = pipeline.prepare(cfg, splits)
    pruned = pipeline.prune(cfg, resume=True, ctx=ctx)
    tuned = pipeline.finetune(cfg, model=pruned.model, pruner=pruned.pruner, resume=True, ctx=ctx)
    evaluation = pipeline.evaluate(cfg, model=tuned.model, ctx=ctx)
    learns_rates = pruned.pruner.learns_rates
    if learns_rates and cfg.prune.epochs > 0 and reached_epoch(pruned.history) is None:
        log(f"[compare] warning: {cell.label} never met the budget in {cfg.prune.epochs} pruning epochs; the final "
            f"keep-ratios come from the budget projection, not from learning (raise prune.gamma0 or prune.epochs)")
    result = {
        "label": cell.label, "method": cell.method, "sparsity": cell.sparsity, "seed": cell.seed,
        "gamma0": getattr(pruned.pruner.options, "gamma0", None),  # the paper schedule's γ0 (harp-paper)
        "learns": {"scores": pruned.pruner.learns_scores, "rates": learns_rates},
        "objectives": {"pretrain": cfg.pretrain.objective,
                       "prune": cfg.prune.objective or cfg.pretrain.objective,
                       "finetune": cfg.finetune.objective or cfg.pretrain.objective},
        "budget_reached_epoch": reached_epoch(pruned.history),
        "prune_best_epoch": pruned.best_epoch, "finetune_best_epoch": tuned.best_epoch,
        "evaluation": evaluation, "prune_history": pruned.history, "finetune_history": tuned.history,
        "pruning": pruned.pruner.describe(), "wall_seconds": time.perf_counter() - started, "config": cfg.to_dict(),
        "environment": environment(),  # where the cell ran: collect_cells.py may gather cells made elsewhere
    }
    write_json(result, done)
    return result


def _cell_in_worker(config: RunConfig, cell: Cell, root: Path, source: Path, splits: Splits,
                    threads: int) -> dict[str, Any]:
    """run_cell in a worker process, its log and progress bars in ``<cell>/log.txt``, not the shared terminal."""
    torch.set_num_threads(threads)
    log_path = cell.path(root) / "log.txt"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    # line-buffered, so the log can be followed while the cell runs
    with open(log_path, "a", buffering=1) as stream, contextlib.redirect_stdout(stream), \
            contextlib.redirect_stderr(stream):
        try:
            return run_cell(config, cell, root, source, splits)
        except Exception:
            traceback.print_exc()  # the main process reports one line; the cell's log keeps the whole story
            raise


def _record_failure(failures: list[str], cell: Cell, root: Path, exc: Exception) -> None:
    failures.append(f"{cell.label} at sparsity {cell.sparsity:g}, seed {cell.seed}: {exc} "
                    f"({cell.path(root) / 'log.txt'})")
    log(f"[compare] failed: {failures[-1]}")


def _raise_failures(failures: list[str], cells: list[Cell]) -> None:
    if failures:
        raise HarpError(f"{len(failures)} of {len(cells)} cells failed; the others finished and are cached, so "
                        f"the same command again retries only these: {'; '.join(failures)}")


def run_cells(config: RunConfig, cells: list[Cell], root: Path, source: Path, splits: Splits,
              meanwhile: Callable[[], T]) -> tuple[list[dict[str, Any]], T]:
    """Every cell's result, in grid order, and what ``meanwhile`` returns (the dense model's evaluation,
    done in this process while the workers run); ``compare.jobs`` cells at a time, each in its own process.

    A cell's result does not depend on which cells run beside it: each seeds itself and reads only the
    shared pre-trained model. Workers are spawned (CUDA cannot be forked), split the CPU threads, and
    receive the loaded ``splits`` (torch shares their tensors through shared memory).
    """
    jobs = min(config.compare.jobs, len(cells))
    failures: list[str] = []  # a failed cell does not stop the others: a long grid keeps what it can
    if jobs <= 1:
        side = meanwhile()
        finished = []
        for cell in cells:
            try:
                finished.append(run_cell(config, cell, root, source, splits))
            except Exception as exc:
                if not isinstance(exc, HarpError):  # a bug, not bad input: its traceback, then the next cell
                    traceback.print_exc()
                _record_failure(failures, cell, root, exc)
        _raise_failures(failures, cells)
        return finished, side
    threads = max(1, (os.cpu_count() or 1) // jobs)
    log(f"[compare] {len(cells)} cells, {jobs} at a time ({threads} CPU thread(s) each); "
        "each cell logs to cells/.../log.txt")
    results: dict[Cell, dict[str, Any]] = {}
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        pending = {pool.submit(_cell_in_worker, config, cell, root, source, splits, threads): cell for cell in cells}
        try:
            own_threads = torch.get_num_threads()
            torch.set_num_threads(threads)  # this process is one more job while the workers run
            try:
                side = meanwhile()
            finally:
                torch.set_num_threads(own_threads)
            for future in as_completed(pending):
                cell = pending[future]
                try:
                    result = results[cell] = future.result()
                except Exception as exc:  # the worker's traceback is in the cell's log
                    _record_failure(failures, cell, root, exc)
                    continue
                evaluation = result["evaluation"]
                robust = ", ".join(f"{name} {100 * acc:.2f}" for name, acc in evaluation["robust_acc"].items())
                log(f"[compare] ({len(results)}/{len(cells)}) {cell.label} at sparsity {cell.sparsity:g}, seed "
                    f"{cell.seed}: natural {100 * evaluation['natural_acc']:.2f}, {robust} "
                    f"({result['wall_seconds']:.0f} s)")
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    _raise_failures(failures, cells)
    return [results[cell] for cell in cells], side
