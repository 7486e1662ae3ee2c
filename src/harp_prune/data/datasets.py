"""Data sets as uint8 image arrays, their splits, and the DataLoaders built on them.

Images are kept as uint8 NCHW until a batch is drawn, and scaled to [0, 1] float there: the models
normalise internally, so attacks always work in pixel space.
"""

from __future__ import annotations

import os
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from harp_prune.data.idx import read_idx
from harp_prune.errors import HarpError
from harp_prune.registry import Registry

EMBEDDED_FILE = "fashion_mnist_small.npz"
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)


@dataclass
class ImageData:
    """Train and test images (uint8, N x C x H x W) with integer labels, and what they are."""

    name: str
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    classes: tuple[str, ...]
    source: str = ""
    mean: tuple[float, ...] = field(default=())
    std: tuple[float, ...] = field(default=())

    def __post_init__(self) -> None:
        for split, images, labels in (("train", self.train_x, self.train_y), ("test", self.test_x, self.test_y)):
            if images.ndim != 4:
                raise HarpError(f"{self.name} {split} images must be N x C x H x W, got shape {images.shape}")
            if len(images) != len(labels):
                raise HarpError(f"{self.name} {split}: {len(images)} images but {len(labels)} labels")
            if not len(images):
                raise HarpError(f"{self.name} {split} split holds no images{f' ({self.source})' if self.source else ''}"
                                "; the data files are empty or damaged: get them again")
            out_of_range = labels[(labels < 0) | (labels >= len(self.classes))]
            if len(out_of_range):
                raise HarpError(f"{self.name} {split} labels must be in [0, {len(self.classes)}), found "
                                f"{out_of_range[0]}; the data files are damaged or of another data set")
        if not self.mean:
            scaled = self.train_x.astype(np.float64) / 255.0
            self.mean = tuple(float(v) for v in scaled.mean(axis=(0, 2, 3)))
            self.std = tuple(float(v) for v in scaled.std(axis=(0, 2, 3)))

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_x.shape[1:])  # type: ignore[return-value]


# what np.load raises for a missing, cut or otherwise damaged npz file and its members
DAMAGED_NPZ_ERRORS = (OSError, EOFError, KeyError, ValueError, zipfile.BadZipFile, zlib.error)


def read_npz(path: str | os.PathLike[str], keys: tuple[str, ...], fix: str) -> dict[str, np.ndarray]:
    """The arrays ``keys`` of an npz file, or a one-line HarpError ending in ``fix`` if it is damaged."""
    try:
        with np.load(path, allow_pickle=False) as arrays:
            return {key: arrays[key] for key in keys}
    except DAMAGED_NPZ_ERRORS as exc:
        raise HarpError(f"data file {path} is missing or damaged ({type(exc).__name__}: {exc}); {fix}") from exc


def load_embedded_fashion_mnist() -> ImageData:
    """The class-balanced Fashion-MNIST subset shipped inside the package (10k train, 2k test)."""
    ref = resources.files("harp_prune.data").joinpath("embedded", EMBEDDED_FILE)
    with resources.as_file(ref) as path:
        parts = read_npz(path, ("train_x", "train_y", "test_x", "test_y"), "reinstall harp-prune")
    return ImageData(
        name="fashion-mnist-small",
        train_x=parts["train_x"][:, None],
        train_y=parts["train_y"].astype(np.int64),
        test_x=parts["test_x"][:, None],
        test_y=parts["test_y"].astype(np.int64),
        classes=FASHION_MNIST_CLASSES,
        source="embedded subset of Fashion-MNIST (Zalando SE, MIT licence)",
    )


def _find_idx(root: Path, stem: str) -> Path | None:
    for candidate in (root / f"{stem}.gz", root / stem):
        if candidate.is_file():
            return candidate
    return None


def load_fashion_mnist(root: str | os.PathLike[str] | None = None) -> ImageData:
    """The full Fashion-MNIST (60k/10k) from its IDX files in ``root`` or the Debian install path."""
    folders = [Path(root)] if root else [DEBIAN_FASHION_MNIST]
    for folder in folders:
        found = {
            split: (_find_idx(folder, images), _find_idx(folder, labels))
            for split, (images, labels) in FASHION_MNIST_FILES.items()
        }
        if all(path is not None for pair in found.values() for path in pair):
            arrays = {split: (read_idx(img), read_idx(lab)) for split, (img, lab) in found.items()}
            return ImageData(
                name="fashion-mnist",
                train_x=arrays["train"][0][:, None],
                train_y=arrays["train"][1].astype(np.int64),
                test_x=arrays["test"][0][:, None],
                test_y=arrays["test"][1].astype(np.int64),
                classes=FASHION_MNIST_CLASSES,
                source=f"Fashion-MNIST IDX files in {folder}",
            )
    where = ", ".join(str(f) for f in folders)
    raise HarpError(
        f"Fashion-MNIST IDX files (train-images-idx3-ubyte[.gz] etc.) not found in {where}; "
        "install them with 'apt-get install dataset-fashion-mnist' or pass --data-root DIR"
    )


DATASETS: Registry[ImageData] = Registry("data set")


def register_dataset(name: str, loader: Callable[[str | None], ImageData], defaults: dict[str, Any] | None = None,
                     summary: str = "") -> None:
    """Make ``load_dataset(name, root)`` call ``loader(root)``. ``defaults`` are the settings the data set implies
    unless the user sets them, by config key: the attack's ``attack.eps`` and ``attack.step_size`` (required
    for a data set whose users should not have to give them), ``data.augment``, ``prune.gamma0``."""
    summary = summary or (loader.__doc__ or "").strip().splitlines()[0]
    DATASETS.register(name, loader, summary=summary, defaults=defaults)


def load_dataset(name: str, root: str | None = None) -> ImageData:
    """Load a named data set; ``root`` is the folder for those read from disk."""
    return DATASETS.get(name).factory(root)


FASHION_MNIST_DEFAULTS = {"attack.eps": 0.1, "attack.step_size": 0.025}
register_dataset("fashion-mnist", load_fashion_mnist, FASHION_MNIST_DEFAULTS)
# 9k training images give ~70 steps per epoch at batch 128, 5x fewer than CIFAR's ~390: γ grows once per epoch,
# so a 5x larger γ0 reaches the budget within the default 4 pruning epochs (measured: γ0 = 0.01 did not reach it
# in 8 epochs; γ0 = 0.05 reaches it at epoch 2 after the default pre-training).
register_dataset("fashion-mnist-small", lambda root: load_embedded_fashion_mnist(),
                 {**FASHION_MNIST_DEFAULTS, "prune.gamma0": 0.05}, summary=load_embedded_fashion_mnist.__doc__)


class UInt8Images(Dataset):
    """Serves uint8 images as float tensors in [0, 1]."""

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        self.images = torch.from_numpy(np.ascontiguousarray(images))
        self.labels = torch.from_numpy(np.ascontiguousarray(labels)).long()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[index].float().div_(255.0), self.labels[index]

    def __getitems__(self, indices: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        # One gather per batch instead of one Python call per image: the loader is not the bottleneck.
        index = torch.as_tensor(indices)
        images = self.images[index].float().div_(255.0)
        return list(zip(images, self.labels[index], strict=True))


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (kept, held out) with ``fraction`` of every class held out; deterministic in ``seed``."""
    if not 0.0 <= fraction < 1.0:
        raise HarpError(f"validation fraction must be in [0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    kept, held = [], []
    for cls in np.unique(labels):
        idx = np.flatnonzero(labels == cls)
        rng.shuffle(idx)
        n_held = round(len(idx) * fraction)
        held.append(idx[:n_held])
        kept.append(idx[n_held:])
    return np.sort(np.concatenate(kept)), np.sort(np.concatenate(held))


@dataclass
class Splits:
    """The data of a run: train, validation (for model selection) and test.

    Each part is a map-style dataset of ([0, 1] image, label) pairs or a ready DataLoader. ``info`` is the
    ImageData they came from, if any (the model zoo needs its shape, classes and statistics). Your own data
    (``info`` None) needs ``attack.eps`` and ``attack.step_size`` in the config; ``validation_split`` carves
    the ``val`` part from your training tensors.

    Example::

        train, val = hp.validation_split(x_train, y_train, val_fraction=0.1)
        splits = hp.Splits(train=train, val=val, test=hp.tensor_dataset(x_test, y_test))
    """

    train: Dataset | DataLoader
    val: Dataset | DataLoader | None
    test: Dataset | DataLoader
    info: ImageData | None = None


def stratified_subset(labels: np.ndarray, limit: int | None, seed: int) -> np.ndarray:
    """Indices of a class-balanced subset of about ``limit`` examples (all of them when limit is None)."""
    if limit is None or limit >= len(labels):
        return np.arange(len(labels))
    if limit <= 0:
        raise HarpError(f"an example limit must be positive, got {limit}")
    return stratified_split(labels, limit / len(labels), seed)[1]


def make_splits(data: ImageData, val_fraction: float, seed: int, test_limit: int | None = None,
                train_limit: int | None = None) -> Splits:
    """Carve a stratified validation split from ``data``'s training images; optionally subsample train/test.

    ``train_limit`` subsamples the training part after the validation split was carved, so the
    validation images never depend on it.
    """
    train_idx, val_idx = stratified_split(data.train_y, val_fraction, seed)
    train_idx = train_idx[stratified_subset(data.train_y[train_idx], train_limit, seed)]
    keep = stratified_subset(data.test_y, test_limit, seed)
    test_x, test_y = data.test_x[keep], data.test_y[keep]
    return Splits(
        train=UInt8Images(data.train_x[train_idx], data.train_y[train_idx]),
        val=UInt8Images(data.train_x[val_idx], data.train_y[val_idx]) if len(val_idx) else None,
        test=UInt8Images(test_x, test_y),
        info=data,
    )


def tensor_dataset(images: torch.Tensor, labels: torch.Tensor) -> TensorDataset:
    """Wrap user tensors (float images in [0, 1], integer labels) for the library's loaders."""
    if not isinstance(images, torch.Tensor) or not isinstance(labels, torch.Tensor):
        raise HarpError(f"images and labels must be torch tensors, got {type(images).__name__} and "
                        f"{type(labels).__name__}; convert them with torch.as_tensor")
    if images.ndim != 4:
        raise HarpError(f"images must be N x C x H x W, got shape {tuple(images.shape)}")
    if labels.ndim != 1 or labels.is_complex() or not bool((labels == labels.round()).all()):
        raise HarpError(f"labels must be a 1-D tensor of whole class indices, got {labels.dtype} of shape "
                        f"{tuple(labels.shape)}; give one class index per image")
    if len(images) != len(labels):
        raise HarpError(f"{len(images)} images but {len(labels)} labels; give one label per image")
    if not len(images):
        raise HarpError("no images given (a tensor of shape 0 x C x H x W); give at least one image")
    if (labels < 0).any():
        raise HarpError(f"labels must be class indices >= 0, found {int(labels.min())}")
    if not bool(torch.isfinite(images).all()):
        raise HarpError("images hold NaN or inf values; give images scaled to [0, 1]")
    if images.min() < 0 or images.max() > 1:
        raise HarpError("images must be scaled to [0, 1]; the model normalises internally")
    return TensorDataset(images.float(), labels.long())


def validation_split(images: torch.Tensor, labels: torch.Tensor, val_fraction: float = 0.1,
                     seed: int = 0) -> tuple[TensorDataset, TensorDataset | None]:
    """Carve a stratified validation split from user tensors: ``val_fraction`` of every class is held out.

    :param images: N x C x H x W float images in [0, 1].
    :param labels: N integer labels.
    :param val_fraction: the share of each class held out for model selection, in [0, 1).
    :param seed: which examples are held out (the same seed holds out the same ones).
    :returns: ``(train, val)`` datasets for :class:`Splits` (``val`` is None when nothing is held out).

    Example::

        import harp_prune as hp
        train, val = hp.validation_split(x_train, y_train, val_fraction=0.1, seed=0)
        splits = hp.Splits(train=train, val=val, test=hp.tensor_dataset(x_test, y_test))
    """
    dataset = tensor_dataset(images, labels)
    kept, held = stratified_split(dataset.tensors[1].cpu().numpy(), val_fraction, seed)

    def part(indices: np.ndarray) -> TensorDataset:
        return TensorDataset(*(t[torch.from_numpy(indices).to(t.device)] for t in dataset.tensors))

    return part(kept), part(held) if len(held) else None


def make_loader(dataset: Dataset, batch_size: int, shuffle: bool, seed: int, num_workers: int = 0,
                sampler: torch.utils.data.Sampler | None = None, pin_memory: bool = False) -> DataLoader:
    """A DataLoader whose shuffling order depends only on ``seed`` (and the epoch, via the sampler)."""
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle and sampler is None,
        sampler=sampler,
        num_workers=num_workers,
        generator=generator,
        pin_memory=pin_memory,
        persistent_workers=num_workers > 0,  # no worker start-up cost at every epoch
        drop_last=False,
    )
