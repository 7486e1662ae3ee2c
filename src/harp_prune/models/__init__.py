"""Model zoo: name -> constructor, each wrapped with input normalisation.

Pruning does not need these: any ``nn.Module`` with Conv2d/Linear layers can be pruned. The zoo only
gives the CLI names to build from, and records how to rebuild a model from a checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import nn

from harp_prune.errors import HarpError
from harp_prune.models.normalize import Normalized
from harp_prune.models.resnet import ResNet18
from harp_prune.models.small_cnn import SmallCNN
from harp_prune.models.vgg import VGG16BN
from harp_prune.models.wrn import WideResNet

ModelFactory = Callable[[int, int, int], nn.Module]  # (in_channels, num_classes, image_size) -> module

MODELS: dict[str, ModelFactory] = {
    "small_cnn": lambda c, n, s: SmallCNN(c, n, width=16, hidden=100, image_size=s),
    "small_cnn_wide": lambda c, n, s: SmallCNN(c, n, width=32, hidden=256, image_size=s),
    "vgg16_bn": lambda c, n, s: VGG16BN(c, n),
    "resnet18": lambda c, n, s: ResNet18(c, n),
    "resnet18_w16": lambda c, n, s: ResNet18(c, n, width=16),
    "wrn_28_4": lambda c, n, s: WideResNet(c, n, depth=28, widen=4),
}


def register_model(name: str, factory: ModelFactory) -> None:
    """Add a model to the zoo under ``name``."""
    MODELS[name] = factory


def build_model(name: str, input_shape: Sequence[int], num_classes: int, mean: Sequence[float],
                std: Sequence[float]) -> Normalized:
    """Build zoo model ``name`` for inputs of ``input_shape`` (C, H, W) with normalisation inside."""
    try:
        factory = MODELS[name]
    except KeyError:
        raise HarpError(f"unknown model '{name}'; choose one of {', '.join(sorted(MODELS))}") from None
    channels, height, _ = input_shape
    return Normalized(factory(channels, num_classes, height), mean, std)


__all__ = ["MODELS", "VGG16BN", "Normalized", "ResNet18", "SmallCNN", "WideResNet", "build_model", "register_model"]
