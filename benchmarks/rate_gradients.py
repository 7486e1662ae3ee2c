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
        runs/compare-full/cells/harp-paper/sparsity-0.999/seed-0/prune/final.pt

``--trace`` instead runs a whole pruning stage from a dense checkpoint (its data and attack settings) with a
learned-rate method and records, per layer and per step, the rate, the keep-ratio, the kept count and the
two parts of the rate gradient; then the budget projection and the validation accuracy before and after it:

    python benchmarks/rate_gradients.py --trace --method harp-paper --epochs 2 --gamma0 0.5 \
        runs/compare-resnet/pretrain/final.pt --out benchmarks/results/rate-trace/resnet-paper.json

For ``harp-paper`` the adversarial part is the rate's autograd gradient less the size loss's, both turned
into dL/da by the slope da/dr (the slope is the saturation: a layer with slope 0 no longer moves whatever γ
does). For ``harp`` the parts are those its ``after_step`` uses: the mean mask gradient per weight and γ / K.
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
from harp_prune.pipeline import prepare
from harp_prune.pipeline.components import make_pruner, objective_for, select_attack
from harp_prune.pruning import HarpPaperPruner, HarpPruner, masked_layers
from harp_prune.training import PGDAT, accuracy, cosine_lr, load_model, train_epoch


def rate_gradients(checkpoint: Path, batches: int, batch_size: int, seed: int, sparsity: float,
                   gamma0: float) -> dict:
    model, pruner, saved = load_model(checkpoint)
    if pruner is None:  # a dense model: HARP's starting point (uniform 10 % keep-ratios, γ = γ0)
        pruner = HarpPaperPruner(sparsity, gamma0=gamma0)
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


def trace(checkpoint: Path, method: str, sparsity: float, epochs: int, options: dict[str, str],
          every: int) -> dict:
    """Run ``epochs`` pruning epochs of ``method`` from the dense ``checkpoint`` and record the rates per step."""
    model, pruner, saved = load_model(checkpoint)
    if pruner is not None:
        raise SystemExit(f"{checkpoint} is already pruned; pass a dense pretrain checkpoint")
    stored = saved["config"]
    values = {f"{section}.{key}": value for section in ("data", "attack") for key, value in stored[section].items()
              if value is not None}
    values.update({"model": stored["model"], "seed": stored["seed"], "prune.method": method,
                   "prune.sparsity": sparsity, "prune.epochs": epochs, "progress": False,
                   **{f"prune.{key}": value for key, value in options.items()}})
    config = build_config(cli_values=values)
    ctx = prepare(config, record_config=False)
    pruner = make_pruner(config, tuple(saved["model_spec"]["input_shape"]))
    pruner.attach(model)
    params = pruner.trainable_parameters(model)
    optimizer = torch.optim.SGD(params, lr=config.prune.lr, momentum=config.prune.momentum,
                                weight_decay=config.prune.weight_decay)
    objective, attack = objective_for(config, "prune"), select_attack(config, "prune")
    pruner.plan(epochs, len(ctx.train_loader))
    layers, total = pruner.layers, sum(layer.numel for layer in pruner.layers)
    steps: list[dict] = []
    epoch_holder = [0]

    def record() -> None:
        row: dict = {"step": len(steps) + 1, "epoch": epoch_holder[0], "gamma": pruner.gamma_for(epoch_holder[0])}
        if isinstance(pruner, HarpPruner):
            before = [float(layer.mean_mask_gradient()) for layer in layers]
            pruner.after_step()
            row.update({"trajectory_density": pruner.trajectory(pruner.step),
                        "price_per_weight": pruner.gamma / (pruner.target_density * total),
                        "adversarial_per_weight": before})
        else:  # the optimiser moved the rates: split their gradient into its parts, in dL/da per weight
            slopes = [float(torch.autograd.grad(layer.keep_ratio(), layer.rate)[0]) for layer in layers]
            with torch.no_grad():
                hinge = float(pruner.size_loss()) > 0
            size = [row["gamma"] * layer.numel / (pruner.target_density * total) * hinge for layer in layers]
            grads = [float(layer.rate.grad) / max(slope, 1e-45) for layer, slope in zip(layers, slopes, strict=True)]
            row.update({"slope": slopes, "adversarial_per_weight": [(g - s) / layer.numel for g, s, layer
                                                                    in zip(grads, size, layers, strict=True)],
                        "price_per_weight": row["gamma"] / (pruner.target_density * total) if hinge else 0.0})
        row.update({"rate": [layer.rate.item() for layer in layers],
                    "keep_ratio": [float(layer.keep_ratio()) for layer in layers],
                    "kept": [layer.kept() for layer in layers],
                    "soft_density": float(pruner.soft_size()), "density": pruner.density()})
        steps.append(row)
        if row["step"] % every == 0:
            print(f"step {row['step']:4d} γ {row['gamma']:.3g} density {row['density']:.5f} soft "
                  f"{row['soft_density']:.5f} kept {row['kept']}", flush=True)

    for epoch in range(epochs):
        epoch_holder[0] = epoch
        for group in optimizer.param_groups:
            group["lr"] = cosine_lr(config.prune.lr, epoch, epochs)
        train = train_epoch(model, ctx.train_loader, optimizer, objective, ctx.device,
                            penalty=lambda epoch=epoch: pruner.penalty(epoch), after_step=record,
                            show_progress=False)
        print(f"epoch {epoch + 1}: {pruner.end_epoch(epoch)} train loss {train['loss']:.3f}", flush=True)
    def validation() -> dict:
        return {"natural": accuracy(model, ctx.select_loader, ctx.device),
                "robust": accuracy(model, ctx.select_loader, ctx.device, attack),
                "kept": [layer.kept() for layer in layers]}

    before = validation()
    shift = pruner.finalize()
    after = {**validation(), "log_factor": shift}
    print(f"before the projection: {before}\nafter it: {after}")
    return {"checkpoint": str(checkpoint), "method": method, "sparsity": sparsity, "epochs": epochs,
            "options": options, "layers": [{"name": name, "weights": layer.numel} for name, layer in zip(
                masked_layers(model), layers, strict=True)],
            "steps": steps, "before_projection": before, "after_projection": after,
            "budget": pruner.budget_report()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", nargs="+", type=Path)
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sparsity", type=float, default=0.999, help="target of a fresh HARP init (dense input)")
    parser.add_argument("--gamma0", type=float, default=0.1, help="γ of a fresh HARP init (dense input)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/rate_gradients.json"))
    parser.add_argument("--trace", action="store_true", help="run a pruning stage from a dense checkpoint and "
                        "record the rates per step")
    parser.add_argument("--method", default="harp", help="--trace: harp or harp-paper")
    parser.add_argument("--epochs", type=int, default=2, help="--trace: pruning epochs")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="--trace: a method option (prune.KEY), e.g. gamma0=0.5; repeatable")
    parser.add_argument("--every", type=int, default=10, help="--trace: print every N steps")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    if args.trace:
        options = dict(item.split("=", 1) for item in args.option)
        result = trace(args.checkpoints[0], args.method, args.sparsity, args.epochs, options, args.every)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result) + "\n")
        print(f"wrote {args.out}")
        return
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
