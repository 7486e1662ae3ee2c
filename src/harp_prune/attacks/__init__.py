"""Attacks for adversarial training and evaluation, one class per algorithm over :class:`Attack`."""

from harp_prune.attacks.base import Attack, input_gradient
from harp_prune.attacks.fgsm import FGSM
from harp_prune.attacks.pgd import PGD

__all__ = ["FGSM", "PGD", "Attack", "input_gradient"]
