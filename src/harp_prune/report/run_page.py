"""The page of one `harp run`: evaluation from ``results.json``, per-epoch curves from its history.

A run still training has no ``results.json`` yet: its page is drawn from ``metrics.jsonl`` alone (the curves so
far), with the evaluation sections saying what is missing.
"""

from __future__ import annotations

import json
from typing import Any

from harp_prune.report import page
from harp_prune.report.figures import colours, integer_ticks, new_figure, to_png

# the prune stage's schedule: history key -> panel title
SCHEDULE = {"gamma": "γ (weight of the size loss)", "size_loss": "size loss",
            "soft_density": "soft density (learned keep-ratio)", "sparsity": "realised sparsity (masks)"}
ACCURACY_COLOURS = {"natural_acc": "#1f77b4", "robust_acc": "#d62728", "train_acc": "#7f7f7f"}
STAGE_SHADES = {"pretrain": "#eef3fb", "prune": "#fdf1e6", "finetune": "#edf7ee"}


def history_by_stage(results: dict[str, Any] | None, metrics: list[dict[str, Any]]) -> dict[str, list[dict]]:
    """Each stage's rows: results.json's history when the run finished, else the metrics file's lines."""
    if results is not None:
        return results["history"]
    stages: dict[str, list[dict[str, Any]]] = {}
    for line in metrics:
        stages.setdefault(line["stage"], []).append({k: v for k, v in line.items() if k != "stage"})
    return stages


def keep_ratio_figure(evaluation: dict[str, Any]) -> bytes:
    """Layer sizes (all weights and those kept) above each layer's keep-ratio, layer by layer."""
    layers = evaluation["layers"]
    names = [layer["name"] for layer in layers]
    figure, axes = new_figure(1, 2, width=max(7.0, 0.75 * len(names) + 3), height=2.9, sharex=True)
    sizes, ratios = axes[0][0], axes[1][0]
    x = range(len(names))
    sizes.bar(x, [layer["numel"] for layer in layers], color="#c9d1dc", label="weights")
    sizes.bar(x, [max(layer["kept"], 1e-9) for layer in layers], color="#1f77b4", label="kept")
    sizes.set_yscale("log")
    sizes.set_ylabel("weights")
    sizes.legend(fontsize=8)
    sizes.set_title(f"per-layer keep-ratios: {100 * evaluation['sparsity']:.2f}% of "
                    f"{evaluation['prunable_weights']:,} prunable weights removed")
    ratios.bar(x, [100 * layer["density"] for layer in layers], color="#ff7f0e")
    for index, layer in enumerate(layers):
        ratios.annotate(f"{100 * layer['density']:.2g}%", (index, 100 * layer["density"]), ha="center",
                        va="bottom", fontsize=7)
    ratios.set_yscale("log")
    ratios.set_ylabel("keep-ratio (%)")
    ratios.set_xticks(list(x), names, rotation=45, ha="right", fontsize=7)
    for axis in (sizes, ratios):
        axis.grid(alpha=0.3, axis="y")
    return to_png(figure)


def schedule_figure(rows: list[dict[str, Any]], target_sparsity: float | None) -> bytes | None:
    """γ, size loss, soft density and realised sparsity per pruning epoch (the keys the method records)."""
    shown = [key for key in SCHEDULE if any(key in row for row in rows)]
    if not rows or not shown:
        return None
    figure, axes = new_figure(len(shown), width=3.4, height=2.9)
    epochs = [row["epoch"] + 1 for row in rows]
    for axis, key in zip(axes[0], shown, strict=True):
        axis.plot(epochs, [row.get(key) for row in rows], marker="o")
        if key == "sparsity" and target_sparsity is not None:
            axis.axhline(target_sparsity, color="grey", linestyle="--", linewidth=1, label="target")
            axis.legend(fontsize=8)
        reached = next((row["epoch"] + 1 for row in rows if row.get("budget_reached")), None)
        if reached is not None:
            axis.axvline(reached, color="#2f9e44", linestyle=":", linewidth=1)
        axis.set_title(SCHEDULE[key], fontsize=9)
        axis.set_xlabel("pruning epoch")
        integer_ticks(axis.xaxis)
        axis.ticklabel_format(axis="y", useOffset=False)  # 0.99001, not 1e-5 + 9.899e-1
        axis.grid(alpha=0.3)
    return to_png(figure)


def training_figure(history: dict[str, list[dict[str, Any]]]) -> bytes | None:
    """Accuracy on the selection split (natural, robust) and the training loss, epoch by epoch over all stages."""
    if not any(history.values()):
        return None
    figure, axes = new_figure(2, width=5.8, height=3.5)
    accuracy, loss = axes[0]
    offset = 0
    for stage, rows in history.items():
        epochs = [offset + row["epoch"] + 1 for row in rows]
        for axis in (accuracy, loss):
            axis.axvspan(offset + 0.5, offset + len(rows) + 0.5, color=STAGE_SHADES.get(stage, "#f4f4f4"))
        if rows:
            accuracy.text(offset + 0.6, 1.0, stage, fontsize=8, va="top", transform=accuracy.get_xaxis_transform())
        for key, style, label in (("natural_acc", "-o", "natural"), ("robust_acc", "-s", "robust"),
                                  ("train_acc", ":", "train (adversarial batches)")):
            if any(key in row for row in rows):
                accuracy.plot(epochs, [100 * row[key] for row in rows], style, color=ACCURACY_COLOURS[key],
                              label=label if offset == 0 else None, markersize=4)
        loss.plot(epochs, [row["train_loss"] for row in rows], "-o", color="#6c757d", markersize=4)
        offset += len(rows)
    accuracy.set_ylabel("accuracy (%)")
    accuracy.set_title("accuracy per epoch on the selection split")
    accuracy.legend(fontsize=8, loc="lower right")
    loss.set_title("training loss per epoch")
    for axis in (accuracy, loss):
        axis.set_xlabel("epoch (all stages)")
        axis.grid(alpha=0.3)
    return to_png(figure)


def attack_figure(evaluations: dict[str, dict[str, Any]]) -> bytes:
    """Natural, per-attack and worst-case accuracy of each evaluated model, side by side."""
    models = list(evaluations)
    names = ["natural", *dict.fromkeys(a for e in evaluations.values() for a in e["robust_acc"])]
    if len(names) > 2:
        names.append("worst case")
    figure, axes = new_figure(1, width=max(5.5, 1.1 * len(names) + 2), height=3.4)
    axis = axes[0][0]
    width = 0.8 / len(models)
    palette = colours(len(models))
    for index, model in enumerate(models):
        values = [_accuracy(evaluations[model], name) for name in names]
        bars = axis.bar([i + (index - (len(models) - 1) / 2) * width for i in range(len(names))],
                        [100 * (v or 0.0) for v in values], width, label=model, color=palette(index))
        axis.bar_label(bars, labels=[page.percent(v, 1) for v in values], fontsize=7)
    axis.set_xticks(range(len(names)), names)
    axis.set_ylabel("accuracy on the test images (%)")
    axis.legend(fontsize=8)
    axis.grid(alpha=0.3, axis="y")
    return to_png(figure)


def _accuracy(evaluation: dict[str, Any], name: str) -> float | None:
    if name == "natural":
        return evaluation["natural_acc"]
    if name == "worst case":
        return evaluation["worst_case_acc"]
    return evaluation["robust_acc"].get(name)


def sweep_figure(evaluations: dict[str, dict[str, Any]]) -> bytes | None:
    """Robust accuracy at multiples of eps: it must fall as eps grows and reach ~0 at large eps."""
    sweeps = {model: e["sanity"] for model, e in evaluations.items() if e.get("sanity")}
    if not sweeps:
        return None
    figure, axes = new_figure(1, width=6.0, height=3.4)
    axis = axes[0][0]
    for (model, sweep), style in zip(sweeps.items(), ("--o", "-s", "-^"), strict=False):
        axis.plot(sweep["eps"], [100 * acc for acc in sweep["robust_acc"]], style, label=model)
    axis.set_xscale("log")
    axis.set_xlabel(f"eps ({next(iter(sweeps.values()))['norm']})")
    axis.set_ylabel("robust accuracy (%)")
    axis.set_title(f"PGD-{next(iter(sweeps.values()))['steps']} at multiples of eps")
    axis.legend(fontsize=8)
    axis.grid(alpha=0.3)
    return to_png(figure)


def _model_sections(report: page.Page, images: dict[str, bytes], results: dict[str, Any]) -> None:
    """The dense-vs-pruned table and the pruned model's per-layer keep-ratios."""
    evaluations = {"dense": results["dense"], "pruned": results["pruned"]}
    pruned = results["pruned"]
    attacks = list(dict.fromkeys(a for e in evaluations.values() for a in e["robust_acc"]))
    report.add("Dense vs pruned", page.table(
        ["model", "natural %", *[f"{a} %" for a in attacks], "worst case %", "sparsity %", "kept weights"],
        [[model, page.percent(e["natural_acc"]), *[page.percent(e["robust_acc"].get(a)) for a in attacks],
          page.percent(e["worst_case_acc"]), page.percent(e["sparsity"], 3),
          f"{e['kept_weights']:,} / {e['prunable_weights']:,}"] for model, e in evaluations.items()]))

    images["keep_ratios.png"] = keep_ratio_figure(pruned)
    layer_rows = [[layer["name"], f"{layer['numel']:,}", f"{layer['kept']:,}", page.percent(layer["density"], 3)]
                  for layer in pruned["layers"]]
    layer_rows += [[f"{layer['name']} (not pruned)", f"{layer['numel']:,}", f"{layer['kept']:,}",
                    page.percent(layer["density"], 3)] for layer in pruned.get("dense_layers", [])]
    report.add("Per-layer keep-ratios of the pruned model",
               page.figure(images["keep_ratios.png"], "per-layer keep-ratios against the layer sizes"),
               page.table(["layer", "weights", "kept", "keep-ratio %"], layer_rows))


def _attack_sections(report: page.Page, images: dict[str, bytes], results: dict[str, Any]) -> None:
    """Accuracy under each attack (AutoAttack's components and flags included) and the eps sweep."""
    evaluations = {"dense": results["dense"], "pruned": results["pruned"]}
    pruned = results["pruned"]
    attacks = list(dict.fromkeys(a for e in evaluations.values() for a in e["robust_acc"]))
    images["attacks.png"] = attack_figure(evaluations)
    attack_rows = [[name, _describe(pruned["attacks"].get(name) or results["dense"]["attacks"].get(name, {})),
                    *[page.percent(e["robust_acc"].get(name)) for e in evaluations.values()],
                    f"{pruned.get('attack_seconds', {}).get(name, 0.0):.2f}"] for name in attacks]
    parts = [page.figure(images["attacks.png"], "accuracy under each attack"),
             page.table(["attack", "settings", "dense %", "pruned %", "seconds (pruned)"], attack_rows)]
    for model, evaluation in evaluations.items():
        for name, detail in evaluation.get("attack_details", {}).items():  # AutoAttack's per-component figures
            parts.append(page.paragraph(f"{model}, {name}: robust accuracy after each component "
                                       f"(clean {page.percent(detail['clean_acc'])}%)"))
            parts.append(page.table(["component", "robust %"],
                                    [[c, page.percent(acc)] for c, acc in detail["components"].items()]))
    for model, evaluation in evaluations.items():
        parts.append(page.flags([f"{model}: {flag}" for flag in evaluation["flags"]],
                                f"{model}: no attack raised a flag (AutoAttack's checks included, when it ran)"))
    report.add("Attacks", *parts)

    sweep = sweep_figure(evaluations)
    if sweep is None:
        report.add("Eps sweep", page.paragraph("no eps sweep in this run (evaluate.eps_sweep was empty)"))
        return
    images["eps_sweep.png"] = sweep
    multiples = next(e["sanity"]["multiples"] for e in evaluations.values() if e.get("sanity"))
    parts = [page.figure(sweep, "robust accuracy against eps"),
             page.table(["model", *[f"{m:g}x eps" for m in multiples]],
                        [[model, *[page.percent(a) for a in e["sanity"]["robust_acc"]]]
                         for model, e in evaluations.items() if e.get("sanity")])]
    for model, evaluation in evaluations.items():
        if evaluation.get("sanity"):
            parts.append(page.flags([f"{model}: {w}" for w in evaluation["sanity"]["warnings"]],
                                    f"{model}: robust accuracy falls with eps and vanishes at large eps"))
    report.add("Eps sweep", *parts)


def _describe(attack: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in attack.items())


def run_page(results: dict[str, Any] | None, metrics: list[dict[str, Any]]) -> tuple[page.Page, dict[str, bytes]]:
    """The page and its PNGs (by file name) of a run, finished (``results``) or still training (``metrics``)."""
    images: dict[str, bytes] = {}
    history = history_by_stage(results, metrics)
    if results is not None:
        config, pruned = results["config"], results["pruned"]
        report = page.Page(
            f"harp run: {config['model']} on {pruned['dataset']}, {config['prune']['method']} to "
            f"{100 * config['prune']['sparsity']:g}% sparsity",
            f"{pruned['examples']} test images, {pruned['norm']} eps {pruned['eps']:.4g}, "
            f"wall time {results['wall_seconds']:.0f} s")
        _model_sections(report, images, results)
        target: float | None = config["prune"]["sparsity"]
    else:
        report = page.Page("harp run (in progress)", "results.json is not written yet: the curves so far, "
                           "from metrics.jsonl; the evaluation follows when the run finishes")
        target = None
    schedule = schedule_figure(history.get("prune", []), target)
    if schedule is not None:
        images["pruning_schedule.png"] = schedule
        reached = any(row.get("budget_reached") for row in history["prune"])
        report.add("Pruning schedule", page.figure(schedule, "γ, size loss, soft density and sparsity per epoch"),
                   page.paragraph("The dotted green line marks the first epoch that met the budget; epochs before it "
                                  "could not be selected." if reached else "The learned rates did not meet the budget "
                                  "during pruning (no epoch could be selected): the projection after pruning set the "
                                  "final keep-ratios."))
    if results is not None and (warning := (results["pruned"].get("budget") or {}).get("warning")):
        report.add("Budget", page.flags([warning], ""))  # the learned density was far from the budget
    training = training_figure(history)
    if training is not None:
        images["accuracy_per_epoch.png"] = training
        report.add("Accuracy per epoch and stage", page.figure(training, "accuracy and loss per epoch"),
                   page.table(["stage", "epochs", "last natural %", "last robust %"],
                              [[stage, len(rows), page.percent(rows[-1].get("natural_acc")),
                                page.percent(rows[-1].get("robust_acc"))] for stage, rows in history.items() if rows]))
    if results is not None:
        _attack_sections(report, images, results)
        report.add("Settings and environment",
                   page.details("config", json.dumps(results["config"], indent=2)),
                   page.details("environment", json.dumps(results["environment"], indent=2)))
    return report, images
