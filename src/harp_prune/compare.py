"""`harp compare`: HARP against its baselines at several sparsities, from one adversarially pre-trained model.

Every cell (method x sparsity x seed) goes through the same pipeline functions as `harp run`
(``pipeline.prune``, ``pipeline.finetune``, ``pipeline.evaluate``) with its own out dir and a config derived
from the user's with ``dataclasses.replace``: same data split, attack, epochs, learning rates and seeds for
every method. The dense model (``<out_dir>/pretrain/final.pt``), its evaluation and every finished cell
(``cells/<method>/sparsity-<s>/seed-<n>/result.json``, written atomically) are cached, and an unfinished
stage continues from its last epoch, so rerunning the same command resumes where it stopped. A cached
result made under different settings is refused rather than mixed in.

Outputs in ``<out_dir>``: ``compare.json`` (all numbers), ``compare.md`` (tables) and, with matplotlib,
``accuracy_vs_sparsity.png`` and ``layer_keep_ratios.png``.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import multiprocessing
import os
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import torch

from harp_prune import pipeline
from harp_prune.config import RunConfig, changed_settings, unset, user_set
from harp_prune.data import Splits
from harp_prune.errors import HarpError
from harp_prune.progress import log
from harp_prune.pruning import PRUNERS, STRATEGIES, pruner_options, wrap_model
from harp_prune.training import load_checkpoint

# settings a cached result must share with the current run to be reused (out dirs, sources, progress and
# the compare section itself may differ)
_CELL_KEYS = ("model", "seed", "select_on", "data", "attack", "pretrain", "prune", "finetune", "evaluate")
_PRETRAIN_KEYS = ("model", "seed", "select_on", "data", "attack", "pretrain")
# where from / how fast, not what is computed
_CACHE_NEUTRAL_KEYS = ("prune.source", "finetune.source", "data.workers", "data.eval_batch_size")
LAYER_BUDGETS = ("uniform", "lamp", "erk")  # drawn beside HARP's learned keep-ratios
T = TypeVar("T")


@dataclass(frozen=True)
class Cell:
    """One entry of the comparison grid."""

    method: str
    sparsity: float
    seed: int
    gamma0: float | None = None  # set for the cells of the γ0 sweep
    layer_budget: str | None = None  # "method:strategy": hydra:lamp (budget) or harp:lamp (initial strategy)

    @property
    def label(self) -> str:
        label = self.method if self.layer_budget is None else f"{self.method}:{self.layer_budget}"
        return label if self.gamma0 is None else f"{label}(g0={self.gamma0:g})"

    def path(self, root: Path) -> Path:
        name = self.method if self.layer_budget is None else f"{self.method}-{self.layer_budget}"
        name = name if self.gamma0 is None else f"{name}-g0-{self.gamma0:g}"
        return root / "cells" / name / f"sparsity-{self.sparsity:g}" / f"seed-{self.seed}"


def parse_list(text: str, cast: type, key: str) -> list:
    """Split a comma-separated config value; explains the expected format on failure."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    try:
        return [cast(item) for item in items]
    except ValueError:
        raise HarpError(f"{key} must be comma-separated {cast.__name__} values, got '{text}'") from None


def grid(config: RunConfig) -> list[Cell]:
    """The cells to run, validated: known methods, sparsities in [0, 1), at least one of each."""
    c = config.compare
    methods = parse_list(c.methods, str, "compare.methods")
    sparsities = parse_list(c.sparsities, float, "compare.sparsities")
    seeds = parse_list(c.seeds, int, "compare.seeds")
    gammas = parse_list(c.gamma0_sweep, float, "compare.gamma0_sweep")
    specs = [(m.partition(":")[0], m.partition(":")[2] or None) for m in methods]
    unknown = [m for m, _ in specs if m not in PRUNERS]
    if unknown:
        raise HarpError(f"unknown method(s) {', '.join(unknown)} in compare.methods; "
                        f"choose from {', '.join(sorted(PRUNERS))}")
    for method, budget in specs:
        takes = {"layer_budget", "init_strategy"} & pruner_options(PRUNERS[method])
        if budget is not None and (budget not in STRATEGIES or not takes):
            raise HarpError(f"'{method}:{budget}' in compare.methods: only methods with a layer budget (hydra) or an "
                            f"initial strategy (harp, rates-only) take ':<strategy>', one of "
                            f"{', '.join(sorted(STRATEGIES))}")
    if (not methods and not gammas) or not sparsities or not seeds:
        raise HarpError("compare needs at least one method (or γ0 value), one sparsity and one seed")
    for s in sparsities:
        if not 0.0 <= s < 1.0:
            raise HarpError(f"compare.sparsities must lie in [0, 1) (0.99 removes 99%), got {s}")
    for g in gammas:
        if g <= 0:
            raise HarpError(f"compare.gamma0_sweep values must be > 0, got {g}")
    cells = [Cell(m, s, seed, None, b) for s in sparsities for m, b in specs for seed in seeds]
    for g in gammas:
        if g == config.prune.gamma0 and "harp" in methods:
            continue  # the plain harp cells already use this γ0
        cells += [Cell("harp", s, seed, g) for s in sparsities for seed in seeds]
    compared = sorted({cell.method for cell in cells})
    taken = {key for method in compared for key in pipeline.option_keys_taken(method)}
    for key in pipeline.PRUNER_OPTION_KEYS:
        if user_set(config, key) and key not in taken:
            raise HarpError(f"{key} is set but none of the compared methods ({', '.join(compared)}) takes it; "
                            "remove the setting or compare a method that uses it")
    return cells


def cell_config(config: RunConfig, cell: Cell, source: Path, root: Path) -> RunConfig:
    """The user's config with this cell's method, sparsity, seed, out dir and source, and without the prune
    options its method does not take (they are for the other compared methods): nothing else changes."""
    prune = replace(config.prune, method=cell.method, sparsity=cell.sparsity, source=str(source))
    finetune = replace(config.finetune, source=None)
    cfg = replace(config, seed=cell.seed, out_dir=str(cell.path(root)), prune=prune, finetune=finetune,
                  provenance=dict(config.provenance))
    taken = pipeline.option_keys_taken(cell.method)
    for key in pipeline.PRUNER_OPTION_KEYS:
        if key not in taken:
            unset(cfg, key)
    if cell.gamma0 is not None:
        cfg.prune.gamma0, cfg.provenance["prune.gamma0"] = cell.gamma0, "compare.gamma0_sweep"
    if cell.layer_budget is not None:  # "method:strategy": the fixed budget, or where learned rates start
        key = "init_strategy" if PRUNERS[cell.method].learns_rates else "layer_budget"
        setattr(cfg.prune, key, cell.layer_budget)
        cfg.provenance[f"prune.{key}"] = "compare.methods"
    return cfg


def _not_taken(method: str) -> tuple[str, ...]:
    """The prune options ``method`` does not take: they cannot change its cells' results."""
    taken = pipeline.option_keys_taken(method)
    return tuple(key for key in pipeline.PRUNER_OPTION_KEYS if key not in taken)


def _check_cache(stored: dict[str, Any], config: RunConfig, keys: tuple[str, ...], what: Path,
                 ignore: tuple[str, ...] = ()) -> None:
    changed = changed_settings(stored, config.to_dict(), keys, _CACHE_NEUTRAL_KEYS + ignore)
    if changed:
        raise HarpError(f"{what} was made with different settings ({', '.join(list(changed)[:4])}); "
                        "use another --out-dir or delete it to recompute")


def _reached_epoch(history: list[dict[str, Any]]) -> int | None:
    """1-based epoch at whose end the budget was first met (HARP's γ freeze), None if never or not learned."""
    for row in history:
        if row.get("budget_reached", 0.0) >= 1.0:
            return int(row["epoch"]) + 1
    return None


def run_cell(config: RunConfig, cell: Cell, root: Path, source: Path, splits: Splits) -> dict[str, Any]:
    """Prune, fine-tune and evaluate one cell, or return its cached result."""
    done = cell.path(root) / "result.json"
    cfg = cell_config(config, cell, source, root)
    if done.exists():
        result = json.loads(done.read_text())
        _check_cache(result["config"], cfg, _CELL_KEYS, done, ignore=_not_taken(cell.method))
        log(f"[compare] {cell.label} at sparsity {cell.sparsity:g}, seed {cell.seed}: finished earlier ({done})")
        return result
    log(f"[compare] {cell.label} at sparsity {cell.sparsity:g}, seed {cell.seed}")
    started = time.perf_counter()
    ctx = pipeline.prepare(cfg, splits)
    pipeline.prune(cfg, resume=True, ctx=ctx)
    model = pipeline.finetune(cfg, resume=True, ctx=ctx)
    evaluation = pipeline.evaluate(cfg, model=model, ctx=ctx)
    pruned = load_checkpoint(ctx.out_dir / "prune" / "final.pt")
    if PRUNERS[cell.method].learns_rates and cfg.prune.epochs > 0 and _reached_epoch(pruned["history"]) is None:
        log(f"[compare] warning: {cell.label} never met the budget in {cfg.prune.epochs} pruning epochs; the final "
            f"keep-ratios come from the budget projection, not from learning (raise prune.gamma0 or prune.epochs)")
    finetuned = load_checkpoint(ctx.out_dir / "finetune" / "final.pt")
    result = {
        "label": cell.label, "method": cell.method, "sparsity": cell.sparsity, "seed": cell.seed,
        "gamma0": cfg.prune.gamma0 if PRUNERS[cell.method].learns_rates else None,
        "objectives": {"pretrain": cfg.pretrain.objective,
                       "prune": cfg.prune.objective or cfg.pretrain.objective,
                       "finetune": cfg.finetune.objective or cfg.pretrain.objective},
        "budget_reached_epoch": _reached_epoch(pruned["history"]),
        "prune_best_epoch": pruned["best_epoch"], "finetune_best_epoch": finetuned["best_epoch"],
        "evaluation": evaluation, "prune_history": pruned["history"], "finetune_history": finetuned["history"],
        "pruning": pruned["pruning"], "wall_seconds": time.perf_counter() - started, "config": cfg.to_dict(),
    }
    pipeline.write_json(result, done)
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
        return run_cell(config, cell, root, source, splits)


def run_cells(config: RunConfig, cells: list[Cell], root: Path, source: Path, splits: Splits,
              meanwhile: Callable[[], T]) -> tuple[list[dict[str, Any]], T]:
    """Every cell's result, in grid order, and what ``meanwhile`` returns (the dense model's evaluation,
    done in this process while the workers run); ``compare.jobs`` cells at a time, each in its own process.

    A cell's result does not depend on which cells run beside it: each seeds itself and reads only the
    shared pre-trained model. Workers are spawned (CUDA cannot be forked), split the CPU threads, and
    receive the loaded ``splits`` (torch shares their tensors through shared memory).
    """
    jobs = min(config.compare.jobs, len(cells))
    if jobs <= 1:
        side = meanwhile()
        return [run_cell(config, cell, root, source, splits) for cell in cells], side
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
                except Exception as exc:
                    raise HarpError(f"cell {cell.label} at sparsity {cell.sparsity:g}, seed {cell.seed} failed "
                                    f"({exc}); see {cell.path(root) / 'log.txt'}") from exc
                evaluation = result["evaluation"]
                robust = ", ".join(f"{name} {100 * acc:.2f}" for name, acc in evaluation["robust_acc"].items())
                log(f"[compare] ({len(results)}/{len(cells)}) {cell.label} at sparsity {cell.sparsity:g}, seed "
                    f"{cell.seed}: natural {100 * evaluation['natural_acc']:.2f}, {robust} "
                    f"({result['wall_seconds']:.0f} s)")
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return [results[cell] for cell in cells], side


def strategy_densities(model, sparsities: list[float]) -> dict[str, dict[str, list[float]]]:
    """Per-layer keep-ratios of the fixed strategies on the dense model, by sparsity then strategy."""
    layers = list(wrap_model(copy.deepcopy(model).cpu()).values())
    return {f"{s:g}": {name: STRATEGIES[name](layers, 1.0 - s) for name in LAYER_BUDGETS if name in STRATEGIES}
            for s in sparsities}


def summarize_cells(cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and spread over seeds of each (label, sparsity)."""
    groups: dict[tuple[str, float], list[dict[str, Any]]] = {}
    for cell in cells:
        groups.setdefault((cell["label"], cell["sparsity"]), []).append(cell)
    rows = []
    for (label, sparsity), members in groups.items():
        natural = [m["evaluation"]["natural_acc"] for m in members]
        per_attack = {name: [m["evaluation"]["robust_acc"][name] for m in members]
                      for name in members[0]["evaluation"]["robust_acc"]}
        attacks = {name: {"mean": statistics.fmean(v), "std": statistics.pstdev(v)} for name, v in per_attack.items()}
        attack = next(iter(attacks))  # the headline robust accuracy: the first configured attack
        reached = [m["budget_reached_epoch"] for m in members]
        rows.append({
            "label": label, "method": members[0]["method"], "gamma0": members[0]["gamma0"], "sparsity": sparsity,
            "seeds": [m["seed"] for m in members], "attack": attack,
            "natural_acc": statistics.fmean(natural), "robust_acc": attacks[attack]["mean"],
            "natural_std": statistics.pstdev(natural), "robust_std": attacks[attack]["std"],
            "attacks": attacks,
            "realised_sparsity": statistics.fmean(m["evaluation"]["sparsity"] for m in members),
            "budget_reached_epoch": reached if any(r is not None for r in reached) else None,
            "learns_rates": members[0]["gamma0"] is not None,
            "layers": members[0]["evaluation"]["layers"],
        })
    return rows


def _pct(value: float, spread: float = 0.0) -> str:
    return f"{100 * value:.2f}" + (f" ± {100 * spread:.2f}" if spread > 0 else "")


def markdown(results: dict[str, Any]) -> str:
    """Tables for people: accuracy per method and sparsity, the γ0 sweep, and per-layer keep-ratios."""
    rows, dense = results["summary"], results["dense"]
    sparsities = sorted({r["sparsity"] for r in rows})
    labels = list(dict.fromkeys(r["label"] for r in rows))
    attack = rows[0]["attack"] if rows else "robust"
    attacks = list(rows[0]["attacks"]) if rows else [attack]
    by_key = {(r["label"], r["sparsity"]): r for r in rows}
    cfg = results["config"]
    lines = [
        f"# harp compare: {cfg['model']} on {dense['dataset']}, {attack} at eps {dense['eps']:.4g} "
        f"({dense['examples']} test images)", "",
        f"Dense pre-trained model: natural {_pct(dense['natural_acc'])}%, "
        + ", ".join(f"{name} {_pct(acc)}%" for name, acc in dense["robust_acc"].items())
        + f". Epochs: prune {cfg['prune']['epochs']}, finetune {cfg['finetune']['epochs']}; seeds "
        f"{cfg['compare']['seeds']}. Cells are natural / {' / '.join(attacks)} accuracy (%), mean ± spread "
        "(population std) over seeds.", "",
        "| method | " + " | ".join(f"{100 * s:g}% sparsity" for s in sparsities) + " |",
        "|---|" + "---|" * len(sparsities),
    ]
    for label in labels:
        cells = []
        for s in sparsities:
            r = by_key.get((label, s))
            missed = r is not None and r["learns_rates"] and r["budget_reached_epoch"] is None
            cells.append("-" if r is None else " / ".join(
                [_pct(r["natural_acc"], r["natural_std"])] + [_pct(a["mean"], a["std"]) for a in r["attacks"].values()]
            ) + (" †" if missed else ""))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    if any(r["learns_rates"] and r["budget_reached_epoch"] is None for r in rows):
        lines += ["", "† the learned rates never met the budget during pruning, so the budget projection after pruning "
                  "set the final keep-ratios (one common logit shift): raise prune.gamma0 or prune.epochs."]
    harp_rows = [r for r in rows if r["method"] == "harp"]
    if len({r["gamma0"] for r in harp_rows}) > 1:
        lines += ["", "## γ0 sweep (HARP)", "",
                  "| γ0 | sparsity % | budget reached at epoch | natural % | robust % |", "|---|---|---|---|---|"]
        for r in sorted(harp_rows, key=lambda r: (r["sparsity"], r["gamma0"])):
            reached = r["budget_reached_epoch"] or []
            when = ", ".join("never" if e is None else str(e) for e in reached) or "never"
            lines.append(f"| {r['gamma0']:g} | {100 * r['sparsity']:g} | {when} | {_pct(r['natural_acc'])} | "
                         f"{_pct(r['robust_acc'])} |")
    for s in sparsities:
        harp = by_key.get(("harp", s))
        budgets = results["strategies"].get(f"{s:g}", {})
        if harp is None:
            continue
        names = list(budgets)
        lines += ["", f"## per-layer keep-ratio (%) at {100 * s:g}% sparsity: HARP learned vs fixed strategies", "",
                  "| layer | weights | harp | " + " | ".join(names) + " |", "|---|---|---|" + "---|" * len(names)]
        for i, layer in enumerate(harp["layers"]):
            fixed = " | ".join(f"{100 * budgets[n][i]:.3f}" for n in names)
            lines.append(f"| {layer['name']} | {layer['numel']:,} | {100 * layer['density']:.3f} | {fixed} |")
    cell_seconds = sum(c["wall_seconds"] for c in results["cells"])
    lines += ["", f"wall time: {cell_seconds:.0f} s in the cells (prune + fine-tune + evaluation, summed), "
              f"{results['wall_seconds']:.0f} s in this invocation (cached cells are not rerun)"]
    return "\n".join(lines)


def plot(results: dict[str, Any], out: Path) -> list[Path]:
    """Accuracy against sparsity per method, and HARP's per-layer keep-ratios beside uniform/LAMP/ERK."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("[compare] matplotlib is not installed (pip install 'harp-prune[plots]'); skipping the plots")
        return []
    rows, dense = results["summary"], results["dense"]
    if not rows:
        return []
    attack = rows[0]["attack"]
    sparsities = sorted({r["sparsity"] for r in rows})

    def position(s: float) -> float:  # 90% -> 1, 99% -> 2, 99.9% -> 3: the paper's log-density axis
        return -math.log10(max(1.0 - s, 1e-12))

    labels = list(dict.fromkeys(r["label"] for r in rows))
    colours = plt.get_cmap("tab20" if len(labels) > 10 else "tab10")
    figure, axes = plt.subplots(1, 2, figsize=(12.5, 4.4), sharex=True)
    for axis, key, title in ((axes[0], "natural_acc", "natural accuracy"), (axes[1], "robust_acc", f"{attack}")):
        for index, label in enumerate(labels):
            own = sorted((r for r in rows if r["label"] == label), key=lambda r: r["sparsity"])
            axis.errorbar([position(r["sparsity"]) for r in own], [100 * r[key] for r in own],
                          yerr=[100 * r[key.replace("acc", "std")] for r in own], marker="o", capsize=3, label=label,
                          linewidth=2.4 if label == "harp" else 1.2, color=colours(index),
                          linestyle=":" if "(g0=" in label else "-")
        reference = dense[key] if key == "natural_acc" else dense["robust_acc"][attack]
        axis.axhline(100 * reference, color="grey", linestyle="--", linewidth=1, label="dense")
        axis.set_title(title)
        axis.set_xlabel("sparsity")
        axis.set_ylabel("accuracy (%)")
        axis.set_xticks([position(s) for s in sparsities], [f"{100 * s:g}%" for s in sparsities])
        axis.grid(alpha=0.3)
    axes[1].legend(fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5))
    figure.suptitle(f"{results['config']['model']} on {dense['dataset']}: accuracy against sparsity")
    figure.tight_layout()
    paths = [out / "accuracy_vs_sparsity.png"]
    figure.savefig(paths[0], dpi=120)
    plt.close(figure)

    panels = [s for s in sparsities if any(r["label"] == "harp" and r["sparsity"] == s for r in rows)]
    if panels:
        figure, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.2), squeeze=False)
        for axis, s in zip(axes[0], panels, strict=True):
            harp = next(r for r in rows if r["label"] == "harp" and r["sparsity"] == s)
            names = [layer["name"] for layer in harp["layers"]]
            x = range(len(names))
            axis.plot(x, [layer["density"] for layer in harp["layers"]], marker="o", linewidth=2.2, label="harp")
            for name, values in results["strategies"].get(f"{s:g}", {}).items():
                axis.plot(x, values, marker=".", linestyle="--", label=name)
            axis.set_yscale("log")
            axis.set_title(f"{100 * s:g}% sparsity")
            axis.set_xticks(list(x), names, rotation=60, ha="right", fontsize=7)
            axis.set_ylabel("keep-ratio")
            axis.grid(alpha=0.3)
            axis.legend(fontsize=8)
        figure.suptitle("per-layer keep-ratios: HARP learned vs fixed strategies")
        figure.tight_layout()
        paths.append(out / "layer_keep_ratios.png")
        figure.savefig(paths[-1], dpi=120)
        plt.close(figure)
    return paths


def compare(config: RunConfig, splits: Splits | None = None) -> dict[str, Any]:
    """Run (or resume) the whole grid and write compare.json, compare.md and the plots; returns the results.

    ``splits`` replaces the configured data set (as in ``pipeline.run``); every cell uses the same split.
    """
    started = time.perf_counter()
    cells = grid(config)
    root = Path(config.out_dir)
    source = root / "pretrain" / "final.pt"
    for cell in cells:  # before pre-training: every cell must be able to run
        pipeline.validate_run(cell_config(config, cell, source, root))
    ctx = pipeline.prepare(config, splits, check_pruner=False)  # the cells' configs name the pruners
    log(f"harp compare: {config.model} on {ctx.splits.info.name}, {len(cells)} cells "
        f"({config.compare.methods} at {config.compare.sparsities}, seeds {config.compare.seeds}), out {root}")
    if source.exists():
        _check_cache(load_checkpoint(source)["config"], config, _PRETRAIN_KEYS, source)
    dense = pipeline.pretrain(config, resume=True, ctx=ctx)
    dense_json = root / "dense.json"

    def evaluate_dense() -> dict[str, Any]:
        cached = json.loads(dense_json.read_text()) if dense_json.exists() else {}
        if cached.get("evaluate") == config.to_dict()["evaluate"]:
            return cached["evaluation"]
        evaluation = pipeline.evaluate(config, model=dense, ctx=ctx)
        pipeline.write_json({"evaluation": evaluation, "evaluate": config.to_dict()["evaluate"]}, dense_json)
        return evaluation

    finished, dense_eval = run_cells(config, cells, root, source, ctx.splits, meanwhile=evaluate_dense)
    sparsities = sorted({cell.sparsity for cell in cells})
    results = {
        "config": config.to_dict(), "dense": dense_eval, "summary": summarize_cells(finished),
        "strategies": strategy_densities(dense, sparsities),
        "cells": [{k: v for k, v in c.items() if k not in ("prune_history", "finetune_history", "config")}
                  for c in finished],
        "wall_seconds": time.perf_counter() - started, "environment": pipeline.environment(),
    }
    pipeline.write_json(results, root / "compare.json")
    table = markdown(results)
    (root / "compare.md").write_text(table + "\n")
    for path in plot(results, root):
        log(f"[compare] wrote {path}")
    log(table)
    return results
