"""Cost of one HARP pruning step relative to one dense PGD-AT step (same model, batch and attack).

    python benchmarks/prune_step.py                      # small CNN (1x28x28, real images) and VGG16-BN (3x32x32)
    python benchmarks/prune_step.py --models small_cnn --repeats 5

Each repetition runs the three variants back to back, in a rotating order (dense PGD-AT; HARP with the mask
computed once per optimiser step and reused by all attack iterations; HARP re-sorting |S| on every forward
pass like the official code), so machine noise hits all three alike; the median of each is reported with
the ratios. Run it on an otherwise idle machine: with other processes on the cores, oversubscribed OpenMP
threads make every step several times slower and the ratios meaningless.
Target: HARP (mask reuse) / dense <= 1.05.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from harp_prune.attacks import PGD
from harp_prune.data import load_embedded_fashion_mnist
from harp_prune.models import build_model
from harp_prune.pruning import HarpPruner
from harp_prune.training import PGDAT


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
    variants = {name: make_variant(name, model_name, shape, attack_steps) for name in ("dense", "harp", "harp-resort")}
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
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="small_cnn,vgg16_bn")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--attack-steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", default=None, help="write the figures as JSON here")
    args = parser.parse_args()
    results = []
    print(f"{'model':<12} {'batch':>5} {'dense s':>9} {'harp s':>9} {'resort s':>9} {'harp/dense':>11} "
          f"{'resort/dense':>13}")
    for model_name in args.models.split(","):
        r = measure(model_name, args.batch, args.attack_steps, args.repeats)
        results.append(r)
        s = r["seconds"]
        print(f"{model_name:<12} {args.batch:>5} {s['dense']:>9.3f} {s['harp']:>9.3f} {s['harp-resort']:>9.3f} "
              f"{r['ratio_harp_vs_dense']:>11.3f} {r['ratio_resort_vs_dense']:>13.3f}", flush=True)
    if args.output:
        Path(args.output).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
