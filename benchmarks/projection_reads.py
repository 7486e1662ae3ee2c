"""How many device-to-host reads one budget projection makes, bisecting on the device or on a host copy.

frontier projects its rates onto the budget after every pruning step. On the H200 grid
(benchmarks/results/compare-paper-gpu/) its cells took 2.2 times as long as HYDRA-LAMP's, against about the
same on the CPU grid: with 14 processes sharing one GPU, every read of a keep-ratio back to the host waits for
the device. This counts the reads of device values (``float()``, ``.item()``, ``.cpu()``, ``.tolist()`` of a
tensor computed from the rates: each one a synchronisation on a GPU; the rates are marked as a GPU's by a
tensor subclass) and times both ways here on the CPU, where a read costs nothing; the GPU time saved is not
measured here.

    python benchmarks/projection_reads.py --model resnet18 --sparsity 0.999

Writes ``benchmarks/results/projection_reads.json``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from harp_prune.models import build_model
from harp_prune.pruning import build_pruner, project_to_budget
from harp_prune.results import environment, write_json

READS = {"__float__", "__int__", "item", "cpu", "tolist"}


class DeviceTensor(torch.Tensor):
    """A rate that stands for one on a GPU: what is computed from it stays a DeviceTensor, ``.cpu()`` gives a
    plain (host) tensor, and each read of its values to the host (a synchronisation on a GPU) is counted."""

    reads = 0

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in READS:
            cls.reads += 1
        result = super().__torch_function__(func, types, args, kwargs or {})
        return result.as_subclass(torch.Tensor) if name == "cpu" else result


def scattered_layers(model_name: str, sparsity: float, seed: int) -> list:
    """A model's masked layers with rates scattered off the budget, as a pruning step leaves them, the rates
    standing for rates on a GPU."""
    torch.manual_seed(seed)
    model = build_model(model_name, (1, 28, 28), 10, [0.5], [0.25])
    pruner = build_pruner("frontier", sparsity)
    pruner.attach(model)
    with torch.no_grad():
        for layer in pruner.layers:
            layer.rate = torch.nn.Parameter((layer.rate + torch.randn(()) * 0.5).as_subclass(DeviceTensor))
    return pruner.layers


def measure(model_name: str, sparsity: float, on_host: bool, seeds: int) -> dict[str, Any]:
    reads, seconds, shifts = [], [], []
    for seed in range(seeds):
        layers = scattered_layers(model_name, sparsity, seed)
        DeviceTensor.reads = 0
        started = time.perf_counter()
        shifts.append(project_to_budget(layers, 1 - sparsity, on_host=on_host))
        seconds.append(time.perf_counter() - started)
        reads.append(DeviceTensor.reads)
    return {"reads": statistics.median(reads), "median_seconds": statistics.median(seconds), "shifts": shifts}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--sparsity", type=float, default=0.999)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "projection_reads.json")
    args = parser.parse_args()
    device = measure(args.model, args.sparsity, on_host=False, seeds=args.seeds)
    host = measure(args.model, args.sparsity, on_host=True, seeds=args.seeds)
    if device["shifts"] != host["shifts"]:
        raise SystemExit("the two ways found different shifts: the host copy is not the same projection")
    print(f"{args.model} at sparsity {args.sparsity:g}, median of {args.seeds} scattered rate draws")
    print(f"  bisection on the device: {device['reads']:.0f} reads, {device['median_seconds'] * 1e3:.1f} ms (CPU)")
    print(f"  bisection on a host copy: {host['reads']:.0f} reads, {host['median_seconds'] * 1e3:.1f} ms (CPU)")
    print(f"  reads: {device['reads'] / host['reads']:.0f}x fewer; the shifts are identical")
    write_json({"model": args.model, "sparsity": args.sparsity, "seeds": args.seeds, "on_device": device,
                "on_host": host, "environment": environment()}, args.out)


if __name__ == "__main__":
    main()
