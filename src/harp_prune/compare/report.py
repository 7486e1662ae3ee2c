"""What `harp compare` shows: mean and spread over seeds per cell and markdown tables (the page and its plots:
``harp_prune.report``)."""

from __future__ import annotations

import copy
import statistics
from typing import Any

from harp_prune.compare.grid import SWEPT_METHOD
from harp_prune.pruning import STRATEGIES, pruner_class, wrap_model

LAYER_BUDGETS = ("uniform", "lamp", "erk")  # drawn beside HARP's learned keep-ratios


def strategy_densities(model, sparsities: list[float]) -> dict[str, dict[str, list[float]]]:
    """Per-layer keep-ratios of the fixed strategies on the dense model, by sparsity then strategy."""
    layers = list(wrap_model(copy.deepcopy(model).cpu()).values())
    shown = [name for name in LAYER_BUDGETS if name in STRATEGIES]
    return {f"{s:g}": {name: STRATEGIES.get(name).factory(layers, 1.0 - s) for name in shown} for s in sparsities}


# a cell's result.json keeps these for itself; compare.json's cell entries leave them out (its own config and
# environment are the grid's)
CELL_DETAIL_KEYS = ("prune_history", "finetune_history", "config", "environment")


def cell_entry(cell: dict[str, Any]) -> dict[str, Any]:
    """A cell's result as compare.json lists it: without its histories, config and environment."""
    return {key: value for key, value in cell.items() if key not in CELL_DETAIL_KEYS}


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
            # what the method learns while pruning: its per-layer allocation (harp, harp-paper, frontier, ...), its
            # scores, both or neither (one-shot methods)
            "learns_rates": pruner_class(members[0]["method"]).learns_rates,
            "learns_scores": pruner_class(members[0]["method"]).learns_scores,
            "layers": members[0]["evaluation"]["layers"],
        })
    return rows


def _learns(row: dict[str, Any]) -> str:
    learned = [what for what, flag in (("scores", row["learns_scores"]), ("per-layer allocation", row["learns_rates"]))
               if flag]
    return " and ".join(learned) or "nothing (one-shot)"


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
                  "set the final keep-ratios (one factor on every keep-ratio): raise prune.gamma0 (harp-paper) or "
                  "prune.epochs."]
    lines += ["", "What each method learns while pruning: " + "; ".join(
        f"{label}: {_learns(next(r for r in rows if r['label'] == label))}" for label in labels) + "."]
    harp_rows = [r for r in rows if r["method"] == SWEPT_METHOD]
    if len({r["gamma0"] for r in harp_rows}) > 1:
        lines += ["", f"## γ0 sweep ({SWEPT_METHOD})", "",
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
