"""The page of a `harp compare` grid, from its ``compare.json``: accuracy against sparsity per method, the
table of every cell, and per-layer keep-ratios of every method beside the fixed strategies (uniform, LAMP, ERK)."""

from __future__ import annotations

import json
from typing import Any

from harp_prune.report import page
from harp_prune.report.figures import colours, log_density_position, new_figure, to_png


def accuracy_figure(results: dict[str, Any]) -> bytes:
    """Natural and robust accuracy against sparsity, one line per method (mean and spread over seeds)."""
    rows, dense = results["summary"], results["dense"]
    attack = rows[0]["attack"]
    sparsities = sorted({r["sparsity"] for r in rows})
    labels = list(dict.fromkeys(r["label"] for r in rows))
    palette = colours(len(labels))
    figure, axes = new_figure(2, width=6.2, height=4.4)
    for axis, key, title in ((axes[0][0], "natural_acc", "natural accuracy"), (axes[0][1], "robust_acc", attack)):
        for index, label in enumerate(labels):
            own = sorted((r for r in rows if r["label"] == label), key=lambda r: r["sparsity"])
            axis.errorbar([log_density_position(r["sparsity"]) for r in own], [100 * r[key] for r in own],
                          yerr=[100 * r[key.replace("acc", "std")] for r in own], marker="o", capsize=3, label=label,
                          linewidth=2.4 if label == "harp" else 1.2, color=palette(index),
                          linestyle=":" if "(g0=" in label else "-")
        reference = dense[key] if key == "natural_acc" else dense["robust_acc"][attack]
        axis.axhline(100 * reference, color="grey", linestyle="--", linewidth=1, label="dense")
        axis.set_title(title)
        axis.set_xlabel("sparsity")
        axis.set_ylabel("accuracy (%)")
        axis.set_xticks([log_density_position(s) for s in sparsities], [f"{100 * s:g}%" for s in sparsities])
        axis.grid(alpha=0.3)
    axes[0][1].legend(fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5))
    figure.suptitle(f"{results['config']['model']} on {dense['dataset']}: accuracy against sparsity")
    return to_png(figure)


def keep_ratio_figure(results: dict[str, Any], sparsities: list[float]) -> bytes:
    """HARP's learned per-layer keep-ratios beside the fixed strategies', one panel per sparsity."""
    rows = results["summary"]
    figure, axes = new_figure(len(sparsities), width=5.5, height=4.2)
    for axis, sparsity in zip(axes[0], sparsities, strict=True):
        harp = next(r for r in rows if r["label"] == "harp" and r["sparsity"] == sparsity)
        names = [layer["name"] for layer in harp["layers"]]
        x = range(len(names))
        axis.plot(x, [layer["density"] for layer in harp["layers"]], marker="o", linewidth=2.2, label="harp")
        for name, values in results["strategies"].get(f"{sparsity:g}", {}).items():
            axis.plot(x, values, marker=".", linestyle="--", label=name)
        axis.set_yscale("log")
        axis.set_title(f"{100 * sparsity:g}% sparsity")
        axis.set_xticks(list(x), names, rotation=60, ha="right", fontsize=7)
        axis.set_ylabel("keep-ratio")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.suptitle("per-layer keep-ratios: HARP learned vs fixed strategies")
    return to_png(figure)


def _with_spread(mean: float, spread: float) -> str:
    return page.percent(mean) + (f" ± {page.percent(spread)}" if spread > 0 else "")


def _attacks(row: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Mean and spread per attack; an older compare.json (before per-attack summaries) holds the first attack's."""
    return row.get("attacks") or {row["attack"]: {"mean": row["robust_acc"], "std": row["robust_std"]}}


def _cell_table(rows: list[dict[str, Any]]) -> str:
    attacks = list(_attacks(rows[0]))
    body = []
    for row in sorted(rows, key=lambda r: (r["sparsity"], r["label"])):
        missed = row["learns_rates"] and row["budget_reached_epoch"] is None
        body.append([row["label"] + (" †" if missed else ""), f"{100 * row['sparsity']:g}",
                     page.percent(row["realised_sparsity"], 3), _with_spread(row["natural_acc"], row["natural_std"]),
                     *[_with_spread(_attacks(row)[a]["mean"], _attacks(row)[a]["std"]) for a in attacks],
                     ", ".join(str(seed) for seed in row["seeds"])])
    return page.table(["method", "target sparsity %", "realised sparsity %", "natural %",
                       *[f"{a} %" for a in attacks], "seeds"], body)


def _layer_table(rows: list[dict[str, Any]], strategies: dict[str, list[float]]) -> str:
    """Every method's keep-ratio (%) per layer at one sparsity, and the fixed strategies'."""
    first = rows[0]["layers"]
    header = ["layer", "weights", *[r["label"] for r in rows], *strategies]
    body = [[layer["name"], f"{layer['numel']:,}", *[page.percent(r["layers"][i]["density"], 3) for r in rows],
             *[page.percent(values[i], 3) for values in strategies.values()]] for i, layer in enumerate(first)]
    return page.table(header, body)


def compare_page(results: dict[str, Any]) -> tuple[page.Page, dict[str, bytes]]:
    """The page and its PNGs (by file name) of a comparison."""
    rows, dense, config = results["summary"], results["dense"], results["config"]
    attack = rows[0]["attack"] if rows else "robust"
    report = page.Page(
        f"harp compare: {config['model']} on {dense['dataset']}, {attack} at eps {dense['eps']:.4g}",
        f"dense model: natural {page.percent(dense['natural_acc'])}%, "
        + ", ".join(f"{name} {page.percent(acc)}%" for name, acc in dense["robust_acc"].items())
        + f"; {dense['examples']} test images; epochs: prune {config['prune']['epochs']}, finetune "
        f"{config['finetune']['epochs']}; seeds {config['compare']['seeds']}; wall time "
        f"{results['wall_seconds']:.0f} s")
    images: dict[str, bytes] = {}
    if not rows:
        report.add("Cells", page.paragraph("no cell has finished yet"))
        return report, images
    images["accuracy_vs_sparsity.png"] = accuracy_figure(results)
    parts = [page.figure(images["accuracy_vs_sparsity.png"], "accuracy against sparsity per method"),
             _cell_table(rows)]
    if any(r["learns_rates"] and r["budget_reached_epoch"] is None for r in rows):
        parts.append(page.paragraph("† the learned rates never met the budget during pruning; the projection "
                                    "after pruning set the final keep-ratios: raise prune.gamma0 or prune.epochs"))
    report.add("Accuracy against sparsity", *parts)
    sparsities = sorted({r["sparsity"] for r in rows})
    with_harp = [s for s in sparsities if any(r["label"] == "harp" and r["sparsity"] == s for r in rows)]
    parts = []
    if with_harp:
        images["layer_keep_ratios.png"] = keep_ratio_figure(results, with_harp)
        parts.append(page.figure(images["layer_keep_ratios.png"], "per-layer keep-ratios per method"))
    for sparsity in sparsities:
        parts.append(page.paragraph(f"keep-ratio (%) per layer at {100 * sparsity:g}% sparsity"))
        parts.append(_layer_table([r for r in rows if r["sparsity"] == sparsity],
                                  results["strategies"].get(f"{sparsity:g}", {})))
    report.add("Per-layer keep-ratios", *parts)
    report.add("Settings and environment", page.details("config", json.dumps(config, indent=2)),
               page.details("environment", json.dumps(results["environment"], indent=2)))
    return report, images
