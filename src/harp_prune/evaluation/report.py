"""Result tables for people: markdown, printed at the end of a run and saved beside the JSON."""

from __future__ import annotations

from typing import Any


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def comparison_table(rows: dict[str, dict[str, Any]]) -> str:
    """Natural and robust accuracy and sparsity of each evaluated model (e.g. dense vs pruned)."""
    attack_names = sorted({name for result in rows.values() for name in result["robust_acc"]})
    header = ["model", "natural %", *[f"{a} %" for a in attack_names], "sparsity %", "kept weights"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, result in rows.items():
        cells = [label, _pct(result["natural_acc"]), *[_pct(result["robust_acc"].get(a)) for a in attack_names],
                 _pct(result["sparsity"]), f"{result['kept_weights']:,} / {result['prunable_weights']:,}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def layer_table(result: dict[str, Any]) -> str:
    """Per-layer kept weights and keep-ratio of one evaluated model."""
    lines = ["| layer | weights | kept | keep-ratio % |", "|---|---|---|---|"]
    for layer in result["layers"]:
        lines.append(f"| {layer['name']} | {layer['numel']:,} | {layer['kept']:,} | {100 * layer['density']:.3f} |")
    return "\n".join(lines)
