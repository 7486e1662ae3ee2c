"""Data sets: the embedded Fashion-MNIST subset, on-disk formats, splits and loaders.

Every module of this package is imported here, so a new data set is one file that calls ``register_dataset``.
"""

from harp_prune.data.datasets import (
    DATASETS,
    ImageData,
    Splits,
    UInt8Images,
    load_dataset,
    load_embedded_fashion_mnist,
    load_fashion_mnist,
    make_loader,
    make_splits,
    register_dataset,
    stratified_split,
    tensor_dataset,
    validation_split,
)
from harp_prune.data.idx import read_idx
from harp_prune.data.standard import (
    load_cifar10,
    load_cifar100,
    load_image_folder,
    load_svhn,
)
from harp_prune.registry import import_submodules

__all__ = [
    "DATASETS",
    "ImageData",
    "Splits",
    "UInt8Images",
    "load_cifar10",
    "load_cifar100",
    "load_dataset",
    "load_embedded_fashion_mnist",
    "load_fashion_mnist",
    "load_image_folder",
    "load_svhn",
    "make_loader",
    "make_splits",
    "read_idx",
    "register_dataset",
    "stratified_split",
    "tensor_dataset",
    "validation_split",
]

import_submodules(__name__, __path__)
