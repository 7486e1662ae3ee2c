"""Training objectives: what loss one mini-batch contributes (one class per objective)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch
from torch import nn

from harp_prune.attacks import Attack
from harp_prune.errors import HarpError
from harp_prune.registry import NoOptions, Registry, resolve_options


class Objective(ABC):
    """Maps (model, x, y) to (loss, logits used for the running accuracy). The model is in train mode.

    :param attack: the inner maximisation for adversarial objectives (run in eval mode by the attack).
    """

    name: ClassVar[str]
    Options: ClassVar[type] = NoOptions
    adversarial: ClassVar[bool] = True
    replays: int = 1  # optimizer steps per mini-batch (Free-AT replays each batch)

    def __init__(self, attack: Attack | None = None, options: Any = None, **option_values: Any) -> None:
        if self.adversarial and attack is None:
            raise HarpError(f"objective '{self.name}' needs an attack")
        self.attack = attack
        self.options = resolve_options(self.Options, options, option_values, f"objective '{self.name}'")

    @abstractmethod
    def loss(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The mean loss of the batch and the logits whose accuracy is logged."""

    def after_backward(self) -> None:
        """Called after each backward pass, before the optimizer step (Free-AT updates its noise here)."""
        return None


class Natural(Objective):
    """Natural training: plain cross-entropy on clean inputs."""

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


OBJECTIVES: Registry[type[Objective]] = Registry("objective")
# class decorator: make an Objective subclass available as ``cls.name`` with the options ``cls.Options``
register_objective = OBJECTIVES.register_class
register_objective(Natural)
register_objective(PGDAT)


def build_objective(name: str, attack: Attack | None, **options: Any) -> Objective:
    """Objective ``name`` with its ``options`` (an option it does not take is an error naming both); the
    attack is given only to adversarial objectives."""
    cls = OBJECTIVES.get(name).factory
    return cls(attack if cls.adversarial else None, **options)
