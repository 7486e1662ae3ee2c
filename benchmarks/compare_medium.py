"""The medium `harp compare` benchmark: every baseline at 99% and 99.9% sparsity on a stratified 2,000-image
subset of the embedded Fashion-MNIST training data, sized to finish in about half an hour on one shared CPU core.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/compare_medium.py [extra harp flags...]

It is `harp compare --config compare-medium` with fewer training images (the CLI has no flag
to subsample the training split); results land in runs/compare-medium (compare.json, compare.md, plots).
Numbers are from a few epochs on a small model: they show the method ranking at this budget, not the
paper's CIFAR-10/SVHN figures (docs/paper-recipe.md has those).
"""

from __future__ import annotations

import sys

import numpy as np

from harp_prune.cli import build_parser, config_from_args
from harp_prune.compare import compare
from harp_prune.data import ImageData, load_embedded_fashion_mnist, make_splits

TRAIN_IMAGES = 2000


def subset(data: ImageData, per_class: int, seed: int = 0) -> ImageData:
    """``per_class`` training images of every class (stratified, seeded); the test split is kept whole."""
    rng = np.random.default_rng(seed)
    keep = np.sort(np.concatenate([rng.choice(np.flatnonzero(data.train_y == c), per_class, replace=False)
                                   for c in range(data.num_classes)]))
    return ImageData(f"{data.name}-{len(keep)}", data.train_x[keep], data.train_y[keep], data.test_x, data.test_y,
                     data.classes, data.source, data.mean, data.std)


def main(argv: list[str]) -> None:
    args = build_parser().parse_args(["compare", "--config", "compare-medium", *argv])
    config = config_from_args(args)
    data = subset(load_embedded_fashion_mnist(), TRAIN_IMAGES // 10)
    splits = make_splits(data, config.data.val_fraction, config.seed, config.data.test_examples)
    compare(config, splits=splits)


if __name__ == "__main__":
    main(sys.argv[1:])
