"""Shared fixtures: a few hundred real Fashion-MNIST images, tiny configs, a quickly trained small model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harp_prune.attacks import PGD
from harp_prune.config import build_config
from harp_prune.data import ImageData, Splits, load_embedded_fashion_mnist, make_loader, make_splits
from harp_prune.models import build_model
from harp_prune.training import PGDAT, Natural
from harp_prune.training.loop import train_epoch

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def fmnist() -> ImageData:
    return load_embedded_fashion_mnist()


@pytest.fixture(scope="session")
def tiny_data(fmnist: ImageData) -> ImageData:
    """600 train and 200 test images, class-balanced, real."""
    rng = np.random.default_rng(0)
    train = np.sort(np.concatenate([rng.choice(np.flatnonzero(fmnist.train_y == c), 60, replace=False)
                                    for c in range(10)]))
    test = np.sort(np.concatenate([rng.choice(np.flatnonzero(fmnist.test_y == c), 20, replace=False)
                                   for c in range(10)]))
    return ImageData("fashion-mnist-tiny", fmnist.train_x[train], fmnist.train_y[train], fmnist.test_x[test],
                     fmnist.test_y[test], fmnist.classes, "test subset", fmnist.mean, fmnist.std)


@pytest.fixture()
def tiny_splits(tiny_data: ImageData) -> Splits:
    return make_splits(tiny_data, 0.2, seed=0)


@pytest.fixture()
def tiny_config(tmp_path):
    """A RunConfig that runs every stage for one short epoch with a 3-step attack."""
    return build_config(cli_values={
        "out_dir": str(tmp_path / "run"), "progress": False, "attack.steps": 3, "evaluate.pgd_steps": 5,
        "pretrain.epochs": 1, "prune.epochs": 2, "finetune.epochs": 1, "data.batch_size": 64,
    })


@pytest.fixture(scope="session")
def trained_model(tiny_data: ImageData) -> torch.nn.Module:
    """small_cnn trained for a few epochs (naturally, then 1 PGD-AT epoch) on the tiny data: ~70% accurate."""
    torch.manual_seed(0)
    splits = make_splits(tiny_data, 0.0, seed=0)
    model = build_model("small_cnn", tiny_data.input_shape, 10, tiny_data.mean, tiny_data.std)
    loader = make_loader(splits.train, 64, True, seed=0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for _ in range(6):
        train_epoch(model, loader, optimizer, Natural(), torch.device("cpu"), show_progress=False)
    train_epoch(model, loader, optimizer, PGDAT(PGD(0.1, 0.025, 3)), torch.device("cpu"), show_progress=False)
    return model.eval()


@pytest.fixture(scope="session")
def test_batch(tiny_data: ImageData) -> tuple[torch.Tensor, torch.Tensor]:
    """The 200 tiny test images as a float batch in [0, 1]."""
    return torch.from_numpy(tiny_data.test_x).float() / 255.0, torch.from_numpy(tiny_data.test_y).long()
