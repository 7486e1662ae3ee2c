"""Attacks by name (``fgsm``, ``pgd20``, ``cw20``, ``apgd-ce``, ``autoattack``, ...) for configs and the CLI."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from harp_prune.attacks.autoattack import APGD, AutoAttack
from harp_prune.attacks.base import Attack
from harp_prune.attacks.cw import CWPGD
from harp_prune.attacks.fgsm import FGSM
from harp_prune.attacks.pgd import PGD
from harp_prune.errors import HarpError

# A builder takes (eps, norm, step count parsed from the name or None, options) and returns the attack.
AttackBuilder = Callable[[float, str, int | None, dict[str, Any]], Attack]


def _pick(options: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: options[k] for k in keys if options.get(k) is not None}


def _pgd(eps, norm, steps, options):
    return PGD(eps, steps=steps or 10, norm=norm, **_pick(options, "step_size", "restarts"))


def _cw(eps, norm, steps, options):
    return CWPGD(eps, steps=steps or 20, norm=norm, **_pick(options, "step_size", "restarts", "kappa"))


def _fgsm(eps, norm, steps, options):
    if norm != "linf":
        raise HarpError("fgsm is an L-inf attack; use pgd1 for a single L2 step")
    return FGSM(eps)


def _apgd(loss: str) -> AttackBuilder:
    def build(eps, norm, steps, options):
        restarts = options.get("apgd_restarts") or 5
        return APGD(eps, norm, loss=loss, steps=steps or 50, restarts=restarts, **_pick(options, "seed"))
    return build


def _autoattack(eps, norm, steps, options):
    return AutoAttack(eps, norm, **_pick(options, "version", "components", "seed", "batch_size", "state_dir"))


# name pattern (a trailing number sets the steps) -> builder
ATTACKS: dict[str, AttackBuilder] = {
    "fgsm": _fgsm, "pgd": _pgd, "cw": _cw, "apgd-ce": _apgd("ce"), "apgd-dlr": _apgd("dlr"),
    "autoattack": _autoattack,
}


def register_attack(name: str, builder: AttackBuilder) -> None:
    """Make ``build_attack(name or name<steps>, ...)`` call ``builder(eps, norm, steps, options)``."""
    ATTACKS[name] = builder


def build_attack(name: str, eps: float, norm: str = "linf", **options: Any) -> Attack:
    """An attack by name: ``pgd20`` is PGD with 20 steps, ``cw20`` CW-loss PGD, ``apgd-ce`` 50 APGD steps.

    Options (unknown ones are ignored so that one option set serves every name): step_size, restarts, kappa,
    seed, apgd_restarts, version, components, batch_size, state_dir.
    """
    key = name.strip().lower()
    match = re.fullmatch(r"([a-z\-]*[a-z])(\d*)", key)
    base, digits = (match.group(1), match.group(2)) if match else (key, "")
    builder = ATTACKS.get(key) or ATTACKS.get(base)
    if builder is None:
        raise HarpError(f"unknown attack '{name}'; choose from {', '.join(sorted(ATTACKS))} "
                        "(pgd and cw take a step count, e.g. pgd20)")
    steps = int(digits) if digits and key not in ATTACKS else None
    if steps is not None and steps < 1:
        raise HarpError(f"attack '{name}' needs at least one step")
    return builder(eps, norm, steps, options)
