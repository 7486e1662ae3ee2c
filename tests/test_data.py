"""Data: the embedded subset, IDX files, clear errors for missing or damaged files, stratified splits."""

import gzip
import struct

import numpy as np
import pytest
import torch

from harp_prune.data import load_dataset, load_fashion_mnist, make_splits, read_idx, stratified_split, tensor_dataset
from harp_prune.errors import HarpError


def test_embedded_subset_is_balanced_uint8(fmnist):
    assert fmnist.train_x.shape == (10000, 1, 28, 28) and fmnist.test_x.shape == (2000, 1, 28, 28)
    assert fmnist.train_x.dtype == np.uint8
    assert np.all(np.bincount(fmnist.train_y) == 1000) and np.all(np.bincount(fmnist.test_y) == 200)
    assert 0.2 < fmnist.mean[0] < 0.4


def _write_idx(path, array):
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + b"".join(struct.pack(">I", d) for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_reads_idx_folder_and_reports_missing_or_truncated(tmp_path):
    images = np.random.default_rng(0).integers(0, 255, (20, 28, 28))
    labels = np.arange(20) % 10
    for split, n in (("train", 20), ("t10k", 20)):
        _write_idx(tmp_path / f"{split}-images-idx3-ubyte.gz", images[:n])
        _write_idx(tmp_path / f"{split}-labels-idx1-ubyte.gz", labels[:n])
    data = load_fashion_mnist(tmp_path)
    assert data.train_x.shape == (20, 1, 28, 28) and np.array_equal(data.train_x[:, 0], images)
    with pytest.raises(HarpError, match=r"not found in .*empty.*dataset-fashion-mnist"):
        load_fashion_mnist(tmp_path / "empty")
    with gzip.open(tmp_path / "train-images-idx3-ubyte.gz") as f:
        raw = f.read()
    with gzip.open(tmp_path / "train-images-idx3-ubyte.gz", "wb") as f:
        f.write(raw[:-100])
    with pytest.raises(HarpError, match="truncated or corrupted"):
        read_idx(tmp_path / "train-images-idx3-ubyte.gz")


def test_unknown_dataset_names_the_choices():
    with pytest.raises(HarpError, match="fashion-mnist-small"):
        load_dataset("imagenet-on-floppy")


def test_validation_split_is_stratified_and_disjoint(fmnist):
    kept, held = stratified_split(fmnist.train_y, 0.1, seed=0)
    assert len(np.intersect1d(kept, held)) == 0 and len(kept) + len(held) == 10000
    assert np.all(np.bincount(fmnist.train_y[held]) == 100)
    splits = make_splits(fmnist, 0.1, seed=0, test_limit=500, train_limit=900)
    assert len(splits.val) == 1000 and len(splits.test) == 500 and len(splits.train) == 900
    again = make_splits(fmnist, 0.1, seed=0)
    assert torch.equal(splits.val.images, again.val.images)  # the train limit never changes validation
    image, _ = splits.train[0]
    assert image.dtype == torch.float32 and image.min() >= 0 and image.max() <= 1


def test_user_tensors_are_checked():
    dataset = tensor_dataset(torch.rand(4, 3, 8, 8), torch.tensor([0, 1, 2, 3]))
    assert len(dataset) == 4
    with pytest.raises(HarpError, match=r"scaled to \[0, 1\]"):
        tensor_dataset(torch.rand(4, 3, 8, 8) * 255, torch.zeros(4))
