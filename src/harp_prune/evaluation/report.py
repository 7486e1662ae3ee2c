"""Result tables for people: markdown, printed at the end of a run and saved beside the JSON."""

from __future__ import annotations

from typing import Any


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def budget_line(budget: dict[str, Any]) -> str:
    """A pruner's ``budget_report()`` for people: the target's own quantity (realised vs budget), then weights."""
    line = f"{budget['quantity']} kept {budget['realised']:.5f} of dense (budget {budget['target']:.5f})"
    if budget["quantity"] != "weights":
        line += f", weight sparsity {1 - budget['weights']:.5f}"
    if budget.get("warning"):
        line += f"; warning: {budget['warning']}"
    return line


def _budget_cell(budget: dict[str, Any] | None) -> str:
    if budget is None:
        return "-"
    cell = f"{budget['quantity']} {_pct(budget['realised'])} / {_pct(budget['target'])}"
    if "learned" in budget and budget.get("warning"):  # the projection, not learning, met the budget
        cell += f" (learned {_pct(budget['learned'])}: projected)"
    return cell


def comparison_table(rows: dict[str, dict[str, Any]]) -> str:
    """Natural and robust accuracy, sparsity and the pruning budget (kept % of the budgeted quantity vs its
    allowed %: weights, or FLOPs/parameters for channel pruning) of each evaluated model."""
    attack_names = sorted({name for result in rows.values() for name in result["robust_acc"]})
    header = ["model", "natural %", *[f"{a} %" for a in attack_names], "sparsity %", "kept weights",
              "budget: kept % / allowed %"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, result in rows.items():
        cells = [label, _pct(result["natural_acc"]), *[_pct(result["robust_acc"].get(a)) for a in attack_names],
                 _pct(result["sparsity"]), f"{result['kept_weights']:,} / {result['prunable_weights']:,}",
                 _budget_cell(result.get("budget"))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def layer_table(result: dict[str, Any]) -> str:
    """Per-layer kept weights and keep-ratio of one evaluated model; layers left dense (excluded from pruning)
    follow, marked, with their non-zero weights, and the count of every other parameter closes the table."""
    lines = ["| layer | weights | kept | keep-ratio % |", "|---|---|---|---|"]
    for layer in result["layers"]:
        lines.append(f"| {layer['name']} | {layer['numel']:,} | {layer['kept']:,} | {100 * layer['density']:.3f} |")
    for layer in result.get("dense_layers", []):
        lines.append(f"| {layer['name']} (not pruned) | {layer['numel']:,} | {layer['kept']:,} | "
                     f"{100 * layer['density']:.3f} |")
    if result.get("other_parameters"):
        lines.append(f"| other parameters (biases, norms, ...; not pruned) | {result['other_parameters']:,} | - | - |")
    return "\n".join(lines)
