"""Data sets: the embedded Fashion-MNIST subset, on-disk formats, splits and loaders."""

from harp_prune.data.datasets import (
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
)
from harp_prune.data.idx import read_idx
from harp_prune.data.standard import (
    augment_batch,
    load_cifar10,
    load_cifar100,
    load_image_folder,
    load_svhn,
)

__all__ = [
    "ImageData",
    "Splits",
    "UInt8Images",
    "augment_batch",
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
]
