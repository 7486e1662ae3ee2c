"""Are pruned models really smaller and faster? File sizes, CPU latency, and channel-pruning accuracy.

Three parts, each printed as figures and ratios and written to benchmarks/results/export.json:

1. file sizes of ResNet-18 (11.2M prunable weights) pruned to 90 / 99 / 99.9 % (HARP's layer-wise top-k on
   the scaled-magnitude scores, projected onto the budget): the zeroed state dict, the sparse safetensors
   file and the entropy limit;
2. CPU inference latency, side by side: dense vs slimmed VGG16-BN (channel pruning at 50 / 75 / 90 %),
   and dense vs CSR Linear layers (a 4096x4096 layer and small_cnn_wide at 90 / 99 % unstructured);
3. natural and PGD-10 accuracy of harp-channel at 50 / 75 / 90 % channel sparsity on 4000 training and
   1000 test images of the embedded Fashion-MNIST (one short adversarial pre-training shared by all
   points, then prune + fine-tune each).

Run:  PYTHONPATH=src python benchmarks/bench_export.py [--quick] [--skip-accuracy]
The full run takes about 10-15 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from harp_prune.config import build_config
from harp_prune.data import ImageData, load_dataset, make_splits
from harp_prune.export import save_sparse, slim_model, sparsify_linears, zeroed_state_dict
from harp_prune.export.csr import CSRLinear
from harp_prune.models import build_model
from harp_prune.pipeline import evaluate, finetune, prepare, pretrain, prune
from harp_prune.pruning import build_pruner, sparsity_report
from harp_prune.training import load_model

RESULTS = Path(__file__).parent / "results" / "export.json"


def _mb(n: float) -> str:
    return f"{n / 1e6:8.3f} MB"


def file_sizes(levels: list[float]) -> list[dict]:
    rows = []
    print("\n## 1. file sizes: ResNet-18 (3x32x32), unstructured HARP masks")
    print(f"{'sparsity':>9} {'zeroed .pt':>12} {'sparse':>12} {'entropy':>12} {'sparse/dense':>13} "
          f"{'sparse/entropy':>15} {'positions/entropy':>18}")
    for sparsity in levels:
        torch.manual_seed(0)
        model = build_model("resnet18", (3, 32, 32), 10, [0.5] * 3, [0.25] * 3)
        pruner = build_pruner("harp", sparsity)
        pruner.attach(model)
        pruner.finalize()
        state = zeroed_state_dict(model)
        with tempfile.TemporaryDirectory() as folder:
            dense_path, sparse_path = Path(folder) / "z.pt", Path(folder) / "s.safetensors"
            torch.save(state, dense_path)
            sizes = save_sparse(state, sparse_path)
            dense_bytes, sparse_bytes = dense_path.stat().st_size, sparse_path.stat().st_size
        row = {"sparsity": sparsity, "counted_sparsity": sparsity_report(model).sparsity,
               "zeroed_file_bytes": dense_bytes, "sparse_file_bytes": sparse_bytes, **sizes.as_dict(),
               "file_ratio": sparse_bytes / dense_bytes,
               "file_to_entropy": sparse_bytes / sizes.entropy_total,
               "positions_to_entropy": sizes.positions / sizes.entropy_positions}
        rows.append(row)
        print(f"{sparsity:>9.3%} {_mb(dense_bytes):>12} {_mb(sparse_bytes):>12} {_mb(sizes.entropy_total):>12} "
              f"{row['file_ratio']:>13.4f} {row['file_to_entropy']:>15.3f} {row['positions_to_entropy']:>18.3f}")
    return rows


def _latency(model: nn.Module, x: torch.Tensor, repeats: int) -> float:
    """Median seconds of one forward pass (after two warm-up passes)."""
    model.eval()
    times = []
    with torch.no_grad():
        for i in range(repeats + 2):
            start = time.perf_counter()
            model(x)
            if i >= 2:
                times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def latency(levels: list[float], repeats: int) -> dict:
    out: dict = {"slim": [], "csr": []}
    print(f"\n## 2. CPU latency ({torch.get_num_threads()} threads, median of {repeats})")
    shape = (3, 32, 32)
    x = torch.rand(32, *shape)
    torch.manual_seed(0)
    base = build_model("vgg16_bn", shape, 10, [0.5] * 3, [0.25] * 3).eval()
    dense_s = _latency(base, x, repeats)
    print(f"VGG16-BN, batch 32: dense {1000 * dense_s:.1f} ms")
    for sparsity in levels:
        model = copy.deepcopy(base)
        pruner = build_pruner("harp-channel", sparsity, input_shape=shape)
        pruner.attach(model)
        pruner.finalize()
        realised = pruner.realised()
        slim, plan = slim_model(model, shape)
        slim_s = _latency(slim, x, repeats)
        row = {"channel_sparsity": sparsity, "dense_ms": 1000 * dense_s, "slim_ms": 1000 * slim_s,
               "speedup": dense_s / slim_s, "realised_flops": realised["flops"], "realised_params": realised["params"],
               "slim_params": sum(p.numel() for p in slim.parameters()),
               "dense_params": sum(p.numel() for p in base.parameters()), "gathers": len(plan.gathers)}
        out["slim"].append(row)
        print(f"  channel sparsity {sparsity:.0%}: slim {1000 * slim_s:7.1f} ms, speed-up {row['speedup']:5.2f}x "
              f"(FLOPs kept {realised['flops']:.3f}, params {row['slim_params']:,}/{row['dense_params']:,})")
    print("CSR Linear (W_csr @ x.T) vs dense")
    for density in (0.1, 0.01, 0.001):
        torch.manual_seed(0)
        layer = nn.Linear(4096, 4096)
        with torch.no_grad():
            layer.weight.mul_((torch.rand_like(layer.weight) < density).float())
        xl = torch.randn(128, 4096)
        dense_l, csr_l = _latency(layer, xl, repeats), _latency(CSRLinear(layer), xl, repeats)
        out["csr"].append({"model": "linear4096", "sparsity": 1 - density, "dense_ms": 1000 * dense_l,
                           "csr_ms": 1000 * csr_l, "speedup": dense_l / csr_l})
        print(f"  4096x4096, batch 128, sparsity {1 - density:.1%}: dense {1000 * dense_l:6.2f} ms, "
              f"CSR {1000 * csr_l:6.2f} ms, speed-up {dense_l / csr_l:5.2f}x")
    xs = torch.rand(128, 1, 28, 28)
    for sparsity in (0.9, 0.99):
        torch.manual_seed(0)
        model = build_model("small_cnn_wide", (1, 28, 28), 10, [0.5], [0.25])
        pruner = build_pruner("harp", sparsity)
        pruner.attach(model)
        pruner.finalize()
        zeroed = build_model("small_cnn_wide", (1, 28, 28), 10, [0.5], [0.25])
        zeroed.load_state_dict(zeroed_state_dict(model))
        sparse = copy.deepcopy(zeroed)
        replaced = sparsify_linears(sparse, max_density=1.0 - sparsity + 1e-9)
        dense_m, sparse_m = _latency(zeroed, xs, repeats), _latency(sparse, xs, repeats)
        out["csr"].append({"model": "small_cnn_wide", "sparsity": sparsity, "dense_ms": 1000 * dense_m,
                           "csr_ms": 1000 * sparse_m, "speedup": dense_m / sparse_m, "csr_layers": replaced})
        print(f"  small_cnn_wide, batch 128, sparsity {sparsity:.0%} ({len(replaced)} Linear as CSR): dense "
              f"{1000 * dense_m:6.2f} ms, sparse {1000 * sparse_m:6.2f} ms, speed-up {dense_m / sparse_m:5.2f}x")
    return out


def _subset(train_images: int, test_images: int):
    """A class-balanced subset of the embedded Fashion-MNIST (10% of its training part held out for selection)."""
    data = load_dataset("fashion-mnist-small")
    rng = np.random.default_rng(0)

    def pick(labels: np.ndarray, n: int) -> np.ndarray:
        return np.sort(np.concatenate([rng.choice(np.flatnonzero(labels == c), n // 10, replace=False)
                                       for c in range(10)]))

    train, test = pick(data.train_y, train_images), pick(data.test_y, test_images)
    subset = ImageData(f"{data.name}[{train_images}/{test_images}]", data.train_x[train], data.train_y[train],
                       data.test_x[test], data.test_y[test], data.classes, data.source, data.mean, data.std)
    return make_splits(subset, 0.1, seed=0)


def accuracy(levels: list[float], quick: bool) -> list[dict]:
    print("\n## 3. harp-channel accuracy, small_cnn on a subset of the embedded Fashion-MNIST (eps 0.1)")
    root = Path(tempfile.mkdtemp(prefix="harp-bench-channel-"))
    epochs = {"pretrain": 1, "prune": 1, "finetune": 1} if quick else {"pretrain": 4, "prune": 3, "finetune": 2}
    train_images, test_images = (1000, 500) if quick else (4000, 1000)
    common = {"progress": False, "attack.steps": 5, "evaluate.pgd_steps": 10,
              "pretrain.epochs": epochs["pretrain"], "prune.epochs": epochs["prune"],
              "finetune.epochs": epochs["finetune"], "prune.method": "harp-channel", "seed": 0}
    started = time.perf_counter()
    config = build_config(cli_values={**common, "out_dir": str(root / "dense")})
    ctx = prepare(config, _subset(train_images, test_images))
    dense = pretrain(config, ctx=ctx)
    dense_eval = evaluate(config, model=dense, ctx=ctx)
    rows = [{"channel_sparsity": 0.0, "natural_acc": dense_eval["natural_acc"],
             "robust_acc": dense_eval["robust_acc"]["pgd10"], "realised_flops": 1.0, "realised_params": 1.0}]
    print(f"  dense: natural {dense_eval['natural_acc']:.4f}, PGD-10 {dense_eval['robust_acc']['pgd10']:.4f}")
    source = str(root / "dense" / "pretrain" / "final.pt")
    for sparsity in levels:
        point = build_config(cli_values={**common, "out_dir": str(root / f"s{sparsity}"), "prune.sparsity": sparsity,
                                         "prune.source": source})
        pctx = prepare(point, ctx.splits)
        prune(point, ctx=pctx)
        model = finetune(point, ctx=pctx)
        result = evaluate(point, model=model, ctx=pctx)
        _, pruner, _ = load_model(pctx.out_dir / "finetune" / "final.pt")
        realised = pruner.realised()
        row = {"channel_sparsity": sparsity, "natural_acc": result["natural_acc"],
               "robust_acc": result["robust_acc"]["pgd10"], "realised_flops": realised["flops"],
               "realised_params": realised["params"], "weight_sparsity": result["sparsity"]}
        rows.append(row)
        print(f"  channel sparsity {sparsity:.0%}: natural {row['natural_acc']:.4f}, PGD-10 {row['robust_acc']:.4f}, "
              f"FLOPs kept {realised['flops']:.3f}, params kept {realised['params']:.3f}")
    print(f"  ({time.perf_counter() - started:.0f} s; epochs {epochs}, PGD-5 training on {train_images} images, "
          f"{test_images} test images)")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer levels, repeats and epochs (a smoke run)")
    parser.add_argument("--skip-accuracy", action="store_true", help="only sizes and latency (about a minute)")
    parser.add_argument("--output", default=str(RESULTS))
    args = parser.parse_args()
    torch.set_num_threads(2)
    started = time.perf_counter()
    results = {
        "file_sizes": file_sizes([0.9, 0.99] if args.quick else [0.9, 0.99, 0.999]),
        "latency": latency([0.5, 0.75, 0.9], 3 if args.quick else 10),
    }
    if not args.skip_accuracy:
        results["channel_accuracy"] = accuracy([0.5, 0.75, 0.9], args.quick)
    results["wall_seconds"] = time.perf_counter() - started
    results["torch"] = torch.__version__
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(results, indent=2))
    print(f"\nwrote {args.output} ({results['wall_seconds']:.0f} s)")


if __name__ == "__main__":
    main()
