"""CIFAR-10/100 (python pickle batches), SVHN (.mat) and ImageNet-style class folders, read without torchvision.

Each loader looks in ``root`` (``--data-root``; default ``./data``), also in the folder the official archive
extracts to, and raises a one-line HarpError naming where it looked and how to get the files. CIFAR pickles
are read with an unpickler that only admits numpy arrays, so a tampered file cannot run code.
"""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from harp_prune.data.datasets import ImageData, register_dataset
from harp_prune.errors import HarpError

DEFAULT_ROOT = Path("data")
CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"
SVHN_URL = "http://ufldl.stanford.edu/housenumbers/ (train_32x32.mat, test_32x32.mat)"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".webp", ".tif", ".tiff"}
SAFE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("_codecs", "encode"),  # how protocol-2 pickles written by Python 3 store bytes; harmless
    ("__builtin__", "bytes"), ("builtins", "bytes"),  # how they store empty bytes (an empty batch's data)
}


class _ArraysOnly(pickle.Unpickler):
    """Unpickles dicts/lists/bytes/numpy arrays and refuses every other global (no code execution)."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in SAFE_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def read_pickle_dict(path: Path) -> dict[bytes, Any]:
    """One CIFAR batch file as its dict (keys are bytes, as the files were written by Python 2)."""
    try:
        with open(path, "rb") as f:
            loaded = _ArraysOnly(io.BufferedReader(f), encoding="bytes").load()
    except (OSError, pickle.UnpicklingError, EOFError, ValueError) as exc:
        raise HarpError(f"{path} is not a readable CIFAR batch ({exc}); download it again from {CIFAR_URL}") from exc
    if not isinstance(loaded, dict):
        raise HarpError(f"{path} does not hold a CIFAR batch dict; download it again from {CIFAR_URL}")
    return loaded


def _find_folder(root: str | os.PathLike[str] | None, sub: str, required: list[str]) -> Path | None:
    base = Path(root) if root else DEFAULT_ROOT
    for folder in (base / sub, base):
        if all((folder / name).is_file() for name in required):
            return folder
    return None


def _cifar_arrays(batch: dict[bytes, Any], label_key: bytes, path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        data = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(batch[label_key], dtype=np.int64)
    except (KeyError, ValueError) as exc:
        raise HarpError(f"{path} lacks CIFAR fields ({exc}); download it again from {CIFAR_URL}") from exc
    return data, labels


def _cifar(name: str, root, sub: str, train_files: list[str], test_file: str, meta_file: str,
           label_key: bytes, names_key: bytes, n_classes: int) -> ImageData:
    folder = _find_folder(root, sub, [*train_files, test_file])
    if folder is None:
        base = Path(root) if root else DEFAULT_ROOT
        raise HarpError(f"{name} files ({sub}/{test_file} etc.) not found in {base}; download the python version from "
                        f"{CIFAR_URL}, extract it there or pass --data-root DIR")
    train = [_cifar_arrays(read_pickle_dict(folder / f), label_key, folder / f) for f in train_files]
    test_x, test_y = _cifar_arrays(read_pickle_dict(folder / test_file), label_key, folder / test_file)
    classes: tuple[str, ...] = tuple(str(i) for i in range(n_classes))
    if (folder / meta_file).is_file():
        meta = read_pickle_dict(folder / meta_file)
        if names_key in meta and len(meta[names_key]) == n_classes:
            classes = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in meta[names_key])
    return ImageData(name, np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train]),
                     test_x, test_y, classes, source=f"{name} python batches in {folder}")


def load_cifar10(root: str | None = None) -> ImageData:
    """CIFAR-10 from ``cifar-10-batches-py/data_batch_1..5`` and ``test_batch``."""
    return _cifar("cifar10", root, "cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], "test_batch",
                  "batches.meta", b"labels", b"label_names", 10)


def load_cifar100(root: str | None = None) -> ImageData:
    """CIFAR-100 (fine labels) from ``cifar-100-python/train`` and ``test``."""
    return _cifar("cifar100", root, "cifar-100-python", ["train"], "test", "meta", b"fine_labels",
                  b"fine_label_names", 100)


def _svhn_split(path: Path) -> tuple[np.ndarray, np.ndarray]:
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError

    try:
        mat = loadmat(path)
        images = np.ascontiguousarray(np.asarray(mat["X"], dtype=np.uint8).transpose(3, 2, 0, 1))
        labels = np.asarray(mat["y"], dtype=np.int64).reshape(-1)
    except (OSError, KeyError, ValueError, TypeError, MatReadError) as exc:
        raise HarpError(f"{path} is not a readable SVHN .mat file ({exc}); download it again from {SVHN_URL}") from exc
    labels[labels == 10] = 0  # SVHN stores the digit 0 as label 10
    return images, labels


def load_svhn(root: str | None = None) -> ImageData:
    """SVHN (cropped digits, 73k train / 26k test; extra not used) from ``train_32x32.mat`` and ``test_32x32.mat``."""
    files = ["train_32x32.mat", "test_32x32.mat"]
    folder = _find_folder(root, "svhn", files)
    if folder is None:
        base = Path(root) if root else DEFAULT_ROOT
        raise HarpError(f"SVHN files ({', '.join(files)}) not found in {base} or {base / 'svhn'}; "
                        f"download them from {SVHN_URL} or pass --data-root DIR")
    try:
        import scipy.io  # noqa: F401
    except ImportError as exc:
        raise HarpError('SVHN .mat files are read with scipy, which is not installed; '
                        'pip install "harp-prune[svhn]"') from exc
    train_x, train_y = _svhn_split(folder / files[0])
    test_x, test_y = _svhn_split(folder / files[1])
    return ImageData("svhn", train_x, train_y, test_x, test_y, tuple(str(i) for i in range(10)),
                     source=f"SVHN .mat files in {folder}")


def _read_folder_split(folder: Path, classes: list[str], size: int) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image

    images, labels = [], []
    for index, cls in enumerate(classes):
        for path in sorted((folder / cls).iterdir()) if (folder / cls).is_dir() else []:
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            try:
                with Image.open(path) as image:
                    rgb = image.convert("RGB").resize((size, size), Image.BILINEAR)
            except (OSError, ValueError, Image.DecompressionBombError) as exc:  # not an image, or damaged
                raise HarpError(f"{path} is not a readable image ({type(exc).__name__}); "
                                "remove it or replace it with an intact image file") from exc
            images.append(np.asarray(rgb, dtype=np.uint8).transpose(2, 0, 1))
            labels.append(index)
    if not images:
        raise HarpError(f"no images found under {folder}/<class>/; expected files like {folder}/{classes[0]}/x.jpg")
    return np.stack(images), np.asarray(labels, dtype=np.int64)


def load_image_folder(root: str | None = None, size: int = 64) -> ImageData:
    """ImageNet-style ``root/train/<class>/*.jpg`` and ``root/val/<class>/*`` (or ``test``), resized to size x size.

    Everything is decoded into memory as uint8, so this suits small subsets (ImageNet-100 at 64 px, Tiny
    ImageNet), not the full ImageNet.
    """
    try:
        import PIL  # noqa: F401
    except ImportError as exc:
        raise HarpError("image-folder data sets need Pillow: pip install 'harp-prune[images]'") from exc
    base = Path(root) if root else DEFAULT_ROOT
    test_dir = next((base / d for d in ("val", "test") if (base / d).is_dir()), None)
    if not (base / "train").is_dir() or test_dir is None:
        raise HarpError(f"image folder data set needs {base}/train/<class>/ and {base}/val/<class>/ (or test/); "
                        "pass --data-root DIR")
    classes = sorted(p.name for p in (base / "train").iterdir() if p.is_dir())
    if not classes:
        raise HarpError(f"{base}/train has no class sub-folders; expected {base}/train/<class>/<image>")
    train_x, train_y = _read_folder_split(base / "train", classes, size)
    test_x, test_y = _read_folder_split(test_dir, classes, size)
    return ImageData("image-folder", train_x, train_y, test_x, test_y, tuple(classes),
                     source=f"class folders in {base}, resized to {size}x{size}")


CIFAR_DEFAULTS = {"attack.eps": 8 / 255, "attack.step_size": 2 / 255, "data.augment": True}
for _name, _loader, _defaults in (
    ("cifar10", load_cifar10, CIFAR_DEFAULTS),
    ("cifar100", load_cifar100, CIFAR_DEFAULTS),
    ("svhn", load_svhn, {"attack.eps": 8 / 255, "attack.step_size": 2 / 255}),  # no flips for digits
    ("image-folder", load_image_folder, {"attack.eps": 4 / 255, "attack.step_size": 1 / 255, "data.augment": True}),
):
    register_dataset(_name, _loader, _defaults)
