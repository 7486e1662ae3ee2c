"""How much of frontier's per-step marginal values is signal: their mean, spread and t statistic per layer.

frontier (docs/frontier.md) moves each layer's rate by the running mean of v_l, the mean mask gradient over the
layer's frontier. This runs the pruning stage of a preset for a number of epochs (by default with frontier's
first settings, one scale for all layers and no bound on the travel, the walk this diagnosed),
records every step's v_l and kept counts, and prints per layer: the mean of v_l, its standard deviation, the
t statistic of the mean (mean / (std / sqrt(steps))) and that of its deviation from the layers' mean of the
step (what decides where budget flows). It is what showed that on resnet18_w16 at 99.9 % the values of most
layers are noise over a pruning epoch, and that their spread differs 5,000-fold between layers:

    OMP_NUM_THREADS=1 python benchmarks/frontier_values.py runs/compare-resnet --sparsity 0.999 --epochs 1 \\
        --out benchmarks/results/compare-resnet/frontier-values-0.999.json

The out dir of a ``harp compare`` run gives the preset (its config.yaml) and the dense model (pretrain/); the
pruning stage writes to ``<root>/frontier-values/``.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import ClassVar

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from harp_prune import pipeline
from harp_prune.config import build_config, read_yaml
from harp_prune.pruning.frontier import FrontierPruner
from harp_prune.pruning.registry import register_pruner
from harp_prune.results import environment, write_json


@register_pruner
class RecordingFrontier(FrontierPruner):
    """frontier, recording every step's marginal values and kept counts (this benchmark's own method)."""

    name = "frontier-recording"
    steps: ClassVar[list[dict]] = []  # every instance records here: the pipeline builds the pruner

    def after_step(self) -> None:
        values = [layer.frontier_gradient() for layer in self.layers]
        if all(value is not None for value in values):
            self.steps.append({"values": [float(value) for value in values],  # type: ignore[arg-type]
                               "kept": [layer.kept() for layer in self.layers]})
        super().after_step()


def record_values(root: Path, sparsity: float, epochs: int, value_scale: str, travel: float) -> dict:
    """Prune ``root``'s dense model with frontier (and ``root``'s frontier settings), recording v_l and the kept
    counts after every step."""
    stored = read_yaml(root / "config.yaml")
    settings = {key: value for key, value in stored.items() if not key.startswith(("prune.", "compare."))}
    # prune.frontier: boundary_width's former name, in the config.yaml of runs made before the rename
    settings.update({key: value for key, value in stored.items()
                     if key in ("prune.rate_step", "prune.value_decay", "prune.boundary_width", "prune.frontier")})
    settings.update({"prune.method": RecordingFrontier.name, "prune.sparsity": sparsity, "prune.epochs": epochs,
                     "prune.source": str(root / "pretrain" / "final.pt"), "prune.value_scale": value_scale,
                     "prune.travel": travel,
                     "out_dir": str(root / "frontier-values"), "progress": False})
    outcome = pipeline.prune(build_config(settings))
    names = outcome.pruner.layer_names
    steps = RecordingFrontier.steps
    return {"sparsity": sparsity, "epochs": epochs, "value_scale": value_scale, "travel": travel, "settings": settings,
            "layers": names, "steps": steps, "summary": summarize(names, steps), "environment": environment()}


def summarize(names: list[str], steps: list[dict]) -> list[dict]:
    """Per layer: mean and spread of v_l, the t statistic of the mean and of the deviation from the step's mean."""
    values = torch.tensor([step["values"] for step in steps], dtype=torch.float64)
    deviation = values - values.mean(dim=1, keepdim=True)
    root = math.sqrt(len(steps))
    rows = []
    for i, name in enumerate(names):
        std, spread = float(values[:, i].std()), float(deviation[:, i].std())
        rows.append({"layer": name, "kept_first": steps[0]["kept"][i], "kept_last": steps[-1]["kept"][i],
                     "mean": float(values[:, i].mean()), "std": std,
                     "t": float(values[:, i].mean()) / (std / root) if std > 0 else 0.0,
                     "t_vs_layers": float(deviation[:, i].mean()) / (spread / root) if spread > 0 else 0.0})
    return rows


def table(summary: list[dict], steps: int) -> str:
    lines = [f"{steps} steps; t: the mean over its standard error (|t| < 2: not told apart from noise)", "",
             "| layer | kept first | kept last | mean v | std v | t | t vs the layers' mean |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {row['layer']} | {row['kept_first']} | {row['kept_last']} | {row['mean']:+.2e} | {row['std']:.2e} "
              f"| {row['t']:+.2f} | {row['t_vs_layers']:+.2f} |" for row in summary]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", type=Path, help="the out dir of a harp compare run (config.yaml, pretrain/)")
    parser.add_argument("--sparsity", type=float, default=0.999)
    parser.add_argument("--epochs", type=int, default=1)
    # the defaults are frontier's first ones (one scale for all layers, no bound), whose walk this diagnosed
    parser.add_argument("--value-scale", default="shared", choices=("shared", "layer"))
    parser.add_argument("--travel", type=float, default=0.0)
    parser.add_argument("--out", type=Path, help="write the steps and the summary here (JSON)")
    args = parser.parse_args()
    result = record_values(args.root, args.sparsity, args.epochs, args.value_scale, args.travel)
    if args.out:
        write_json(result, args.out)
    print(table(result["summary"], len(result["steps"])))


if __name__ == "__main__":
    main()
