"""One short prune (interrupted after epoch 1, resumed) + fine-tune + evaluate run on the tiny data.

Run in-process for the single-process reference, and as ``torchrun --nproc-per-node 2 dist_worker.py OUT SOURCE``
for the distributed run (gloo on CPU); rank 0 writes ``OUT/result.json``. Used by test_distributed.py.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from pathlib import Path
from unittest import mock

import numpy as np
import torch

from harp_prune import distributed, pipeline
from harp_prune.config import build_config
from harp_prune.data import ImageData, Splits, load_embedded_fashion_mnist, make_splits
from harp_prune.results import write_json
from harp_prune.training import stage


def tiny_splits() -> Splits:
    """480 train / 120 val / 200 test real Fashion-MNIST images (the conftest selection)."""
    data = load_embedded_fashion_mnist()
    rng = np.random.default_rng(0)
    train = np.sort(np.concatenate([rng.choice(np.flatnonzero(data.train_y == c), 60, replace=False)
                                    for c in range(10)]))
    test = np.sort(np.concatenate([rng.choice(np.flatnonzero(data.test_y == c), 20, replace=False)
                                   for c in range(10)]))
    tiny = ImageData("fashion-mnist-tiny", data.train_x[train], data.train_y[train], data.test_x[test],
                     data.test_y[test], data.classes, "test subset", data.mean, data.std)
    return make_splits(tiny, 0.2, seed=0)


def config(out_dir: str | Path, source: str | Path | None, **extra):
    values = {"out_dir": str(out_dir), "progress": False, "device": "cpu", "attack.steps": 3,
              "evaluate.pgd_steps": 5, "data.batch_size": 64, "prune.sparsity": 0.9, "data.val_fraction": 0.2,
              "prune.epochs": 2, "finetune.epochs": 1, "pretrain.objective": "pgd_at",
              # the paper's mechanics: one process and two agree to 97 % of the kept weights; harp's normalised
              # rate steps turn the last-bit differences of averaged gradients into other allocations (95 %)
              "prune.method": "harp-paper"}
    if source is not None:
        values["prune.source"] = str(source)
    values.update(extra)
    return build_config(cli_values=values)


def main(out_dir: str, source: str) -> dict:
    """prune 1 of 2 epochs (interrupted as if killed), resume to 2, fine-tune 1 epoch, evaluate both."""
    splits = tiny_splits()
    cfg = config(out_dir, source)
    ctx = pipeline.prepare(cfg, splits)
    epochs_started = []

    def train_one_epoch_only(*args, **kwargs):
        epochs_started.append(True)
        if len(epochs_started) == 2:
            raise KeyboardInterrupt
        return real_train_epoch(*args, **kwargs)

    real_train_epoch = stage.train_epoch
    with mock.patch.object(stage, "train_epoch", train_one_epoch_only), contextlib.suppress(KeyboardInterrupt):
        pipeline.prune(cfg, ctx=ctx)
    assert not (Path(out_dir) / "prune" / "final.pt").exists()
    pruned = pipeline.prune(cfg, resume=True, ctx=ctx)
    pruned_eval = pipeline.evaluate(cfg, model=pruned.model, ctx=ctx)
    tuned = pipeline.finetune(cfg, ctx=ctx)
    tuned_eval = pipeline.evaluate(cfg, model=tuned.model, ctx=ctx)
    history = torch.load(Path(out_dir) / "prune" / "final.pt", weights_only=True)["history"]
    result = {"world_size": distributed.world_size(), "pruned": pruned_eval, "finetuned": tuned_eval,
              "prune_history": history}
    write_json(result, Path(out_dir) / "result.json")
    return result


def run_as_worker(entry: Callable[[str, str], object]) -> None:
    """A worker script's entry: one thread per process, ``entry(argv[1], argv[2])``, the process group closed."""
    torch.set_num_threads(1)
    try:
        entry(sys.argv[1], sys.argv[2])
    finally:
        distributed.cleanup()


if __name__ == "__main__":
    run_as_worker(main)
