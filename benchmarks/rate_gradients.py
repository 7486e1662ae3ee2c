"""Where HARP's per-layer keep-ratios are pushed: the two parts of each layer's rate gradient.

For a HARP model (a ``prune/final.pt`` of `harp prune` or of a `harp compare` cell; or a dense
``pretrain/final.pt``, which gets HARP's initial state: uniform 10 % keep-ratios), averaged over a few
training mini-batches, each layer's gradient with respect to its keep-ratio a_l splits into

- the adversarial part, dL_adv/da_l: the rate STE's sum of the mask gradients under the PGD-AT loss, and
- the size part, γ dL_hw/da_l = γ N_l / (a_t Σ N) while the hinge is active (docs/method.md, 'Size loss'): the same
  price for every weight, whatever its layer.

Gradient descent raises a_l when the adversarial part is more negative than the size part is positive.
Divided by N_l, both become per-weight: a layer whose adversarial pull per weight is below the uniform
price per weight is driven to its floor a_min. Prints a table and writes JSON:

    python benchmarks/rate_gradients.py runs/compare-full/pretrain/final.pt \
        runs/compare-full/cells/harp/sparsity-0.999/seed-0/prune/final.pt
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from harp_prune.attacks import PGD
from harp_prune.config import build_config
from harp_prune.data import load_dataset, make_loader, make_splits
from harp_prune.pruning import HarpPruner, masked_layers
from harp_prune.training import PGDAT, load_model


def rate_gradients(checkpoint: Path, batches: int, batch_size: int, seed: int, sparsity: float,
                   gamma0: float) -> dict:
    model, pruner, saved = load_model(checkpoint)
    if pruner is None:  # a dense model: HARP's starting point (uniform 10 % keep-ratios, γ = γ0)
        pruner = HarpPruner(sparsity, gamma0=gamma0)
        pruner.attach(model)
        gamma = gamma0
    elif pruner.learns_rates:  # where pruning ended: the γ of its last epoch (frozen once the budget was met)
        gamma = saved["history"][-1]["gamma"]
    else:
        raise SystemExit(f"{checkpoint} was pruned by {pruner.name}, which learns no rates; pass a harp checkpoint")
    stored = saved["config"]
    config = build_config(cli_values={"data.dataset": stored["data"]["dataset"], "data.root": stored["data"]["root"],
                                      "attack.steps": stored["attack"]["steps"]})
    attack = PGD(eps=config.attack.eps, step_size=config.attack.step_size, steps=config.attack.steps)
    splits = make_splits(load_dataset(config.data.dataset, config.data.root), config.data.val_fraction, seed)
    loader = make_loader(splits.train, batch_size, shuffle=True, seed=seed)
    names, layers = zip(*masked_layers(model).items(), strict=True)
    total = sum(layer.numel for layer in layers)
    rates = [layer.rate for layer in layers]
    # da/dr of a = lo + (hi - lo) sigmoid(r), to turn dL/dr into dL/da (the rates do not move here)
    slopes = torch.stack(torch.autograd.grad(sum(layer.keep_ratio() for layer in layers), rates))
    adversarial = torch.zeros(len(layers))
    model.train()
    objective = PGDAT(attack)
    for index, (images, labels) in enumerate(loader):
        if index == batches:
            break
        loss, _ = objective.loss(model, images, labels)
        adversarial += torch.stack(torch.autograd.grad(loss, rates)).detach() / slopes / batches
    rows = []
    for name, layer, adv in zip(names, layers, adversarial.tolist(), strict=True):
        size = gamma * layer.numel / (pruner.target_density * total)  # γ dL_hw/da_l, hinge active
        rows.append({"layer": name, "weights": layer.numel, "kept": layer.kept(),
                     "keep_ratio": float(layer.keep_ratio().detach()), "floor": layer.min_keep,
                     "adversarial_dL_da": adv, "size_dL_da": size,
                     "adversarial_per_weight": adv / layer.numel, "size_per_weight": size / layer.numel})
    return {"checkpoint": str(checkpoint), "gamma": gamma, "target_density": pruner.target_density,
            "batches": batches, "batch_size": batch_size, "layers": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", nargs="+", type=Path)
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sparsity", type=float, default=0.999, help="target of a fresh HARP init (dense input)")
    parser.add_argument("--gamma0", type=float, default=0.1, help="γ of a fresh HARP init (dense input)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/rate_gradients.json"))
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    results = [rate_gradients(path, args.batches, args.batch_size, args.seed, args.sparsity, args.gamma0)
               for path in args.checkpoints]
    for result in results:
        print(f"\n{result['checkpoint']} (γ {result['gamma']:g}, target density {result['target_density']:g}, "
              f"{result['batches']} batches of {result['batch_size']})")
        print("| layer | weights | kept | floor kept | -dL_adv/da per weight | γ dL_hw/da per weight | pull / price |")
        print("|---|---|---|---|---|---|---|")
        for row in result["layers"]:
            pull, price = -row["adversarial_per_weight"], row["size_per_weight"]
            print(f"| {row['layer']} | {row['weights']:,} | {row['kept']:,} | {row['floor'] * row['weights']:.1f} | "
                  f"{pull:.2e} | {price:.2e} | {pull / price:.2f} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
