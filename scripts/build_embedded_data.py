"""Build the embedded Fashion-MNIST subset shipped in ``src/harp_prune/data/embedded``.

Reads the original IDX files (Debian package ``dataset-fashion-mnist`` or a folder you name) and keeps a
class-balanced random subset: 1,000 train and 200 test images per class. Deterministic (seed 0).

    python scripts/build_embedded_data.py [--root /usr/share/datasets/fashion-mnist]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from harp_prune.data import load_fashion_mnist

OUT = Path(__file__).resolve().parents[1] / "src" / "harp_prune" / "data" / "embedded" / "fashion_mnist_small.npz"


def balanced_subset(labels: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    chosen = [rng.choice(np.flatnonzero(labels == c), per_class, replace=False) for c in np.unique(labels)]
    return np.sort(np.concatenate(chosen))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=None, help="folder with the IDX files (default: Debian path)")
    parser.add_argument("--train-per-class", type=int, default=1000)
    parser.add_argument("--test-per-class", type=int, default=200)
    args = parser.parse_args()
    data = load_fashion_mnist(args.root)
    rng = np.random.default_rng(0)
    train = balanced_subset(data.train_y, args.train_per_class, rng)
    test = balanced_subset(data.test_y, args.test_per_class, rng)
    np.savez_compressed(
        OUT,
        train_x=data.train_x[train, 0], train_y=data.train_y[train].astype(np.uint8),
        test_x=data.test_x[test, 0], test_y=data.test_y[test].astype(np.uint8),
    )
    print(f"wrote {OUT} ({OUT.stat().st_size / 1e6:.2f} MB): {len(train)} train, {len(test)} test images")


if __name__ == "__main__":
    main()
