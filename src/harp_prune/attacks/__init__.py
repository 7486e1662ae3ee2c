"""Attacks for adversarial training and evaluation, one class per algorithm over :class:`Attack`.

Every module of this package is imported here, so a new attack is one file that calls ``register_attack``.
"""

from harp_prune.attacks.autoattack import APGD, VERSIONS, AutoAttack, AutoAttackResult, pyautoattack_version
from harp_prune.attacks.base import Attack, input_gradient
from harp_prune.attacks.cw import CWPGD, cw_margin_loss
from harp_prune.attacks.fgsm import FGSM
from harp_prune.attacks.pgd import PGD
from harp_prune.attacks.registry import ATTACKS, build_attack, register_attack
from harp_prune.registry import import_submodules

__all__ = [
    "APGD",
    "ATTACKS",
    "CWPGD",
    "FGSM",
    "PGD",
    "VERSIONS",
    "Attack",
    "AutoAttack",
    "AutoAttackResult",
    "build_attack",
    "cw_margin_loss",
    "input_gradient",
    "pyautoattack_version",
    "register_attack",
]

import_submodules(__name__, __path__)
