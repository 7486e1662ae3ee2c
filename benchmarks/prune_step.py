"""Cost of one HARP pruning step and one fine-tuning step relative to one dense PGD-AT step (same model, batch
and attack).

    python benchmarks/prune_step.py                      # small CNN (1x28x28, real images) and VGG16-BN (3x32x32)
    python benchmarks/prune_step.py --models small_cnn --repeats 5 --batch 32 --attack-steps 2   # a quick check

Each repetition runs the four variants back to back, in a rotating order (dense PGD-AT; HARP with the mask
computed once per optimiser step and the masked weights once per attack; HARP re-sorting |S| on every forward
pass like the official code; fine-tuning, the masks fixed and the weights trained), so machine noise hits all
alike; the median of each is reported with the ratios, and written as JSON. Run it on an otherwise idle
machine: with other processes on the cores, every step is slower and the ratios are noisy.
Targets: HARP (mask reuse) / dense <= 1.02, fine-tuning / dense <= 1.01.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

from harp_prune.attacks import PGD
from harp_prune.data import load_embedded_fashion_mnist
from harp_prune.models import build_model
from harp_prune.pruning import HarpPruner
from harp_prune.results import write_json
from harp_prune.training import PGDAT

VARIANTS = ("dense", "harp", "harp-resort", "finetune")


def batch_for(model_name: str, batch_size: int) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int, int]]:
    if model_name.startswith("small_cnn"):
        data = load_embedded_fashion_mnist()
        images = torch.from_numpy(data.train_x[:batch_size]).float() / 255
        return images, torch.from_numpy(data.train_y[:batch_size]), (1, 28, 28)
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(batch_size, 3, 32, 32, generator=generator)  # CIFAR-shaped; CIFAR is not on disk here
    return images, torch.randint(0, 10, (batch_size,), generator=generator), (3, 32, 32)


def make_variant(name: str, model_name: str, shape, attack_steps: int):
    torch.manual_seed(0)
    model = build_model(model_name, shape, 10, [0.5] * shape[0], [0.25] * shape[0])
    objective = PGDAT(PGD(8 / 255, 2 / 255, attack_steps))
    pruner = None
    if name == "dense":
        params = list(model.parameters())
    elif name == "finetune":
        masks = HarpPruner(0.99)
        masks.attach(model)
        masks.finalize()
        frozen = {id(p) for layer in masks.layers for p in (layer.scores, layer.rate)}
        params = [p for p in model.parameters() if id(p) not in frozen]
        for p in model.parameters():  # as the fine-tuning stage does: the masks fixed, the rest trained
            p.requires_grad_(id(p) not in frozen)
    else:
        pruner = HarpPruner(0.99, gamma0=0.01)
        pruner.attach(model)
        for layer in pruner.layers:
            layer.reuse_mask = name == "harp"
        params = pruner.trainable_parameters(model)
    optimizer = torch.optim.SGD(params, lr=0.01, momentum=0.9, weight_decay=5e-4)

    def step(images: torch.Tensor, labels: torch.Tensor) -> None:
        model.train()
        loss, _ = objective.loss(model, images, labels)
        if pruner is not None:
            loss = loss + pruner.penalty(0)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def measure(model_name: str, batch_size: int, attack_steps: int, repeats: int) -> dict:
    images, labels, shape = batch_for(model_name, batch_size)
    variants = {name: make_variant(name, model_name, shape, attack_steps) for name in VARIANTS}
    for step in variants.values():  # warm-up (allocator, oneDNN primitive cache)
        step(images, labels)
    times: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    for repeat in range(repeats):
        # rotate the order each repetition so that cache and frequency effects do not favour one variant
        for name in names[repeat % len(names):] + names[: repeat % len(names)]:
            step = variants[name]
            started = time.perf_counter()
            step(images, labels)
            times[name].append(time.perf_counter() - started)
    median = {name: statistics.median(values) for name, values in times.items()}
    return {
        "model": model_name, "batch": batch_size, "attack_steps": attack_steps, "repeats": repeats,
        "threads": torch.get_num_threads(), "seconds": median,
        "ratio_harp_vs_dense": median["harp"] / median["dense"],
        "ratio_resort_vs_dense": median["harp-resort"] / median["dense"],
        "ratio_finetune_vs_dense": median["finetune"] / median["dense"],
    }


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="small_cnn,vgg16_bn")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--attack-steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5, help="interleaved repetitions (the median is reported)")
    parser.add_argument("--output", default="benchmarks/results/prune_step.json", help="write the figures as JSON here")
    args = parser.parse_args(argv)
    results = []
    print(f"{'model':<12} {'batch':>5} {'dense s':>9} {'harp s':>9} {'resort s':>9} {'finetune s':>10} "
          f"{'harp/dense':>11} {'resort/dense':>13} {'finetune/dense':>15}")
    for model_name in args.models.split(","):
        r = measure(model_name, args.batch, args.attack_steps, args.repeats)
        results.append(r)
        s = r["seconds"]
        print(f"{model_name:<12} {args.batch:>5} {s['dense']:>9.3f} {s['harp']:>9.3f} {s['harp-resort']:>9.3f} "
              f"{s['finetune']:>10.3f} {r['ratio_harp_vs_dense']:>11.3f} {r['ratio_resort_vs_dense']:>13.3f} "
              f"{r['ratio_finetune_vs_dense']:>15.3f}", flush=True)
    write_json({"command": " ".join(["python", "benchmarks/prune_step.py", *(argv or sys.argv[1:])]),
                "torch": torch.__version__, "results": results}, Path(args.output))
    return results


if __name__ == "__main__":
    main()
