"""Images per second of the three training steps on one device, fp32 against bf16 autocast.

VGG16-BN and ResNet-18 on synthetic CIFAR-shaped data (3x32x32, 10 classes, already on the device, so
the input pipeline is not measured), each step through the library's own ``train_epoch``:

- dense: one PGD-10 adversarial-training step of the dense model (pre-training),
- prune: one HARP step (masked layers, scores and rates trained with the STE, weights frozen, + γ L_hw),
- finetune: one PGD-AT step of the pruned model with the masks fixed.

The figures (images/s, bf16 against fp32, each step against the dense step of the same batch and precision;
target: prune >= 0.95 x dense) are printed as a table and written as JSON. Sized to finish within about
8 minutes on one GPU with the defaults (2 models x 2 batches x 3 steps x 2 precisions). CPU smoke check:
``python benchmarks/gpu_throughput.py --quick --output /tmp/gpu_throughput.json``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from harp_prune.attacks import PGD
from harp_prune.models import build_model
from harp_prune.pipeline import resolve_device
from harp_prune.pruning import HarpPruner
from harp_prune.results import write_json
from harp_prune.training import PGDAT, Performance, train_epoch

CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2471, 0.2435, 0.2616)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def setup(stage: str, name: str, device: torch.device) -> tuple[torch.nn.Module, list, HarpPruner | None]:
    """The model as that stage sees it, the parameters it trains, and the pruner (prune stage only)."""
    torch.manual_seed(0)
    model = build_model(name, (3, 32, 32), 10, CIFAR_MEAN, CIFAR_STD)
    if stage == "dense":
        return model.to(device), list(model.parameters()), None
    pruner = HarpPruner(0.99)
    pruner.attach(model)
    model.to(device)
    params = pruner.trainable_parameters(model)
    if stage == "prune":
        return model, params, pruner
    pruner.finalize()
    frozen = {id(p) for layer in pruner.layers for p in (layer.scores, layer.rate)}
    for param in model.parameters():
        param.requires_grad_(id(param) not in frozen)
    return model, [p for p in model.parameters() if p.requires_grad], None


def measure(stage: str, name: str, device: torch.device, perf: Performance, batch: int, steps: int,
            warmup: int, attack_steps: int) -> float:
    """Images per second over ``steps`` timed steps, after ``warmup`` untimed ones (and compilation)."""
    model, params, pruner = setup(stage, name, device)
    perf.prepare(model)
    forward = perf.compiled(model)
    optimizer = torch.optim.SGD(params, lr=0.01, momentum=0.9)
    objective = PGDAT(PGD(8 / 255, 2 / 255, attack_steps))
    generator = torch.Generator(device="cpu").manual_seed(0)
    batches = [(torch.rand(batch, 3, 32, 32, generator=generator).to(device),
                torch.randint(0, 10, (batch,), generator=generator).to(device)) for _ in range(4)]

    def run(n: int) -> None:
        data = [batches[i % len(batches)] for i in range(n)]
        train_epoch(forward, data, optimizer, objective, device, show_progress=False, performance=perf,
                    penalty=(lambda: pruner.penalty(0)) if pruner is not None else None)

    run(warmup)
    synchronize(device)
    started = time.perf_counter()
    run(steps)
    synchronize(device)
    return steps * batch / (time.perf_counter() - started)


QUICK = ["--device", "cpu", "--models", "small_cnn", "--batches", "8", "--steps", "1", "--warmup", "1",
         "--attack-steps", "1"]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--models", default="vgg16_bn,resnet18")
    parser.add_argument("--stages", default="dense,prune,finetune")
    parser.add_argument("--batches", default="128,512", help="comma-separated batch sizes")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--attack-steps", type=int, default=10)
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                        help="NHWC for the bf16 runs (default: on for CUDA)")
    parser.add_argument("--compile", action="store_true", help="also measure bf16 with torch.compile")
    parser.add_argument("--quick", action="store_true",
                        help=f"a seconds-long check of the script on the CPU: {' '.join(QUICK)} (given flags win)")
    parser.add_argument("--output", default="benchmarks/results/gpu_throughput.json", help="the figures as JSON")
    args = parser.parse_args(argv)
    if args.quick:
        args = parser.parse_args([*QUICK, *(argv if argv is not None else sys.argv[1:])])
    device = resolve_device(args.device)
    channels_last = args.channels_last if args.channels_last is not None else device.type == "cuda"
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32 here: the baseline is not TF32
        torch.backends.cudnn.allow_tf32 = False
    variants = {"fp32": Performance(), "bf16": Performance(amp=True, channels_last=channels_last)}
    if args.compile:
        variants["bf16+compile"] = Performance(amp=True, channels_last=channels_last, compile=True)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
    stages = args.stages.split(",")
    print(f"device {name}, torch {torch.__version__}, {args.steps} timed steps, PGD-{args.attack_steps}, "
          f"bf16 channels_last={channels_last}")
    columns = ([f"{v} img/s" for v in variants] + [f"{v}/fp32" for v in list(variants)[1:]]
               + [f"{v} /dense" for v in variants])
    header = "| model | batch | step | " + " | ".join(columns) + " |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    started = time.perf_counter()
    rows = []
    for model_name in args.models.split(","):
        for batch in (int(b) for b in args.batches.split(",")):
            dense: dict[str, float] = {}
            for stage in stages:
                rates = {}
                for variant, perf in variants.items():
                    try:
                        rates[variant] = measure(stage, model_name, device, perf, batch, args.steps, args.warmup,
                                                 args.attack_steps)
                    except Exception as error:  # one failing variant (a compiler bug) must not end the benchmark
                        print(f"{model_name} {stage} {variant} failed: {type(error).__name__}", file=sys.stderr)
                        rates[variant] = float("nan")
                if stage == "dense":
                    dense = rates
                versus_dense = {v: rates[v] / dense[v] if v in dense else float("nan") for v in variants}
                rows.append({"model": model_name, "batch": batch, "stage": stage, "images_per_second": rates,
                             "versus_dense": versus_dense})
                cells = ([f"{r:,.0f}" for r in rates.values()]
                         + [f"{rates[v] / rates['fp32']:.2f}x" for v in list(variants)[1:]]
                         + [f"{r:.3f}" for r in versus_dense.values()])
                print(f"| {model_name} | {batch} | {stage} | " + " | ".join(cells) + " |", flush=True)
    total = time.perf_counter() - started
    print(f"total {total:.0f} s")
    figures = {"device": name, "torch": torch.__version__, "steps": args.steps, "attack_steps": args.attack_steps,
               "channels_last": channels_last, "seconds": total, "rows": rows}
    write_json(figures, Path(args.output))
    return figures


if __name__ == "__main__":
    main()
