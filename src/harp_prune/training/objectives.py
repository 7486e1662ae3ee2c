"""Training objectives: what loss one mini-batch contributes (one class per objective)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import torch
from torch import nn

from harp_prune.attacks import Attack
from harp_prune.errors import HarpError


class Objective(ABC):
    """Maps (model, x, y) to (loss, logits used for the running accuracy). The model is in train mode.

    :param attack: the inner maximisation for adversarial objectives (run in eval mode by the attack).
    """

    name: ClassVar[str]
    adversarial: ClassVar[bool] = True
    replays: int = 1  # optimizer steps per mini-batch (Free-AT replays each batch)

    def __init__(self, attack: Attack | None = None) -> None:
        if self.adversarial and attack is None:
            raise HarpError(f"objective '{self.name}' needs an attack")
        self.attack = attack

    @abstractmethod
    def loss(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The mean loss of the batch and the logits whose accuracy is logged."""

    def after_backward(self) -> None:
        """Called after each backward pass, before the optimizer step (Free-AT updates its noise here)."""
        return None


class Natural(Objective):
    """Plain cross-entropy on clean inputs."""

    name = "natural"
    adversarial = False

    def loss(self, model, images, labels):
        logits = model(images)
        return nn.functional.cross_entropy(logits, labels), logits


class PGDAT(Objective):
    """PGD adversarial training (Madry et al. 2018): CE on the attack's points only, no clean term."""

    name = "pgd_at"

    def loss(self, model, images, labels):
        adversarial = self.attack(model, images, labels)
        logits = model(adversarial)
        return nn.functional.cross_entropy(logits, labels), logits


OBJECTIVES: dict[str, type[Objective]] = {cls.name: cls for cls in (Natural, PGDAT)}


def register_objective(cls: type[Objective]) -> type[Objective]:
    """Class decorator: make ``cls`` available under ``cls.name``."""
    OBJECTIVES[cls.name] = cls
    return cls


def build_objective(name: str, attack: Attack | None, **options) -> Objective:
    try:
        cls = OBJECTIVES[name]
    except KeyError:
        raise HarpError(f"unknown objective '{name}'; choose one of {', '.join(sorted(OBJECTIVES))}") from None
    try:
        return cls(attack, **options) if cls.adversarial else cls(None, **options)
    except TypeError:
        raise HarpError(f"objective '{name}' takes none of the options {', '.join(options)} "
                        "(beta is for trades/mart, replays for free_at)") from None
