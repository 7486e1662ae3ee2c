"""Model zoo: name -> constructor, each wrapped with input normalisation.

Pruning does not need these: any ``nn.Module`` with Conv2d/Linear layers can be pruned. The zoo only
gives the CLI names to build from, and records how to rebuild a model from a checkpoint.

Every module of this package is imported here, so a new model is one file that calls ``register_model``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import nn

from harp_prune.models.normalize import Normalized
from harp_prune.models.resnet import ResNet18
from harp_prune.models.small_cnn import SmallCNN
from harp_prune.models.vgg import VGG16BN
from harp_prune.models.wrn import WideResNet
from harp_prune.registry import Registry, import_submodules

ModelFactory = Callable[[int, int, int], nn.Module]  # (in_channels, num_classes, image_size) -> module

MODELS: Registry[nn.Module] = Registry("model")


def register_model(name: str, factory: ModelFactory, summary: str = "") -> None:
    """Add a model to the zoo under ``name``: ``factory(in_channels, num_classes, image_size)`` builds it."""
    MODELS.register(name, factory, summary=summary)


register_model("small_cnn", lambda c, n, s: SmallCNN(c, n, width=16, hidden=100, image_size=s),
               "2 conv + 2 linear layers, 167k weights (96.5% in one linear layer); the default")
register_model("small_cnn_wide", lambda c, n, s: SmallCNN(c, n, width=32, hidden=256, image_size=s),
               "small_cnn at twice the width")
register_model("vgg16_bn", lambda c, n, s: VGG16BN(c, n), "VGG16 with BatchNorm (the paper's)")
register_model("resnet18", lambda c, n, s: ResNet18(c, n), "ResNet-18 (the paper's)")
register_model("resnet18_w16", lambda c, n, s: ResNet18(c, n, width=16), "ResNet-18 at 1/4 width (699k weights)")
register_model("wrn_28_4", lambda c, n, s: WideResNet(c, n, depth=28, widen=4), "WideResNet-28-4")


def build_model(name: str, input_shape: Sequence[int], num_classes: int, mean: Sequence[float],
                std: Sequence[float]) -> Normalized:
    """Build zoo model ``name`` for inputs of ``input_shape`` (C, H, W) with normalisation inside."""
    factory = MODELS.get(name).factory
    channels, height, _ = input_shape
    return Normalized(factory(channels, num_classes, height), mean, std)


__all__ = ["MODELS", "VGG16BN", "Normalized", "ResNet18", "SmallCNN", "WideResNet", "build_model", "register_model"]

import_submodules(__name__, __path__)
