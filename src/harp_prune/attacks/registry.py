"""Attacks by name (``fgsm``, ``pgd20``, ``cw20``, ``apgd-ce``, ``autoattack``, ...) for configs and the CLI.

Each entry declares its options as a dataclass; the ``evaluate.<option>`` config keys and flags come from
them. What every attack gets from the run instead (the threat model, the step count in the name, the seed,
the batch size) is an ``AttackSetting``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harp_prune.attacks.autoattack import APGD, VERSIONS, AutoAttack
from harp_prune.attacks.base import Attack
from harp_prune.attacks.cw import CWPGD
from harp_prune.attacks.fgsm import FGSM
from harp_prune.attacks.pgd import PGD
from harp_prune.errors import HarpError
from harp_prune.registry import NoOptions, Registry, option


@dataclass(frozen=True)
class AttackSetting:
    """What an attack takes from the run: threat model, step count (from the name, None: the attack's
    default), seed of random starts, batch size and where AutoAttack keeps its state."""

    eps: float
    norm: str = "linf"
    steps: int | None = None
    step_size: float | None = None
    seed: int = 0
    batch_size: int = 500
    state_dir: str | Path | None = None


@dataclass(frozen=True)
class PgdOptions:
    pgd_restarts: int = option(1, "random restarts of pgd<K> and cw<K> (a point is robust if every restart fails)")


    def __post_init__(self) -> None:
        if self.pgd_restarts < 1:
            raise HarpError(f"pgd_restarts must be >= 1 (1: one random start), got {self.pgd_restarts}")


@dataclass(frozen=True)
class CwOptions(PgdOptions):
    cw_kappa: float = option(50.0, "confidence of cw<K>'s margin loss")


@dataclass(frozen=True)
class ApgdOptions:
    apgd_restarts: int = option(5, "restarts of apgd-ce and apgd-dlr")

    def __post_init__(self) -> None:
        if self.apgd_restarts < 1:
            raise HarpError(f"apgd_restarts must be >= 1, got {self.apgd_restarts}")


@dataclass(frozen=True)
class AutoAttackOptions:
    autoattack_version: str = option("standard", "AutoAttack version: standard, plus or rand, or comma-separated "
                                                 "components (e.g. apgd-ce,square)")


def _fgsm(setting: AttackSetting, options: NoOptions) -> Attack:
    if setting.norm != "linf":
        raise HarpError("fgsm is an L-inf attack; use pgd1 for a single L2 step")
    return FGSM(setting.eps)


def _pgd(setting: AttackSetting, options: PgdOptions) -> Attack:
    return PGD(setting.eps, setting.step_size, setting.steps or 10, restarts=options.pgd_restarts, norm=setting.norm)


def _cw(setting: AttackSetting, options: CwOptions) -> Attack:
    return CWPGD(setting.eps, setting.step_size, setting.steps or 20, restarts=options.pgd_restarts,
                 norm=setting.norm, kappa=options.cw_kappa)


def _apgd(loss: str):
    def build(setting: AttackSetting, options: ApgdOptions) -> Attack:
        return APGD(setting.eps, setting.norm, loss=loss, steps=setting.steps or 50, restarts=options.apgd_restarts,
                    seed=setting.seed)
    return build


def _autoattack(setting: AttackSetting, options: AutoAttackOptions) -> Attack:
    version, components = options.autoattack_version, None
    if version not in VERSIONS:
        version, components = "custom", [c.strip() for c in version.split(",") if c.strip()]
    return AutoAttack(setting.eps, setting.norm, version=version, components=components, seed=setting.seed,
                      batch_size=setting.batch_size, state_dir=setting.state_dir)


ATTACKS: Registry[Attack] = Registry("attack")
ATTACKS.register("fgsm", _fgsm, summary="one signed-gradient step (L-inf)")
ATTACKS.register("pgd", _pgd, options=PgdOptions, summary="PGD on the cross-entropy; pgd20 takes 20 steps")
ATTACKS.register("cw", _cw, options=CwOptions, summary="PGD on the CW margin loss; cw20 takes 20 steps")
ATTACKS.register("apgd-ce", _apgd("ce"), options=ApgdOptions, summary="APGD on the cross-entropy (pyautoattack)")
ATTACKS.register("apgd-dlr", _apgd("dlr"), options=ApgdOptions, summary="APGD on the DLR loss (pyautoattack)")
ATTACKS.register("autoattack", _autoattack, options=AutoAttackOptions,
                 summary="the official AutoAttack ensemble (pyautoattack)")


def register_attack(name: str, builder, options: type = NoOptions, summary: str = "") -> None:
    """Make ``build_attack(name or name<steps>, ...)`` call ``builder(setting, options)``."""
    ATTACKS.register(name, builder, options=options, summary=summary)


def split_attack_name(name: str) -> tuple[str, int | None]:
    """``pgd20`` -> ("pgd", 20); a registered name is never split (``apgd-ce``); unknown names are an error."""
    key = name.strip().lower()
    match = re.fullmatch(r"([a-z\-]*[a-z])(\d*)", key)
    base, digits = (match.group(1), match.group(2)) if match else (key, "")
    if key in ATTACKS:
        return key, None
    if base not in ATTACKS:
        raise HarpError(f"unknown attack '{name}'; choose from {', '.join(ATTACKS.names())} "
                        "(pgd and cw take a step count, e.g. pgd20)")
    steps = int(digits) if digits else None
    if steps is not None and steps < 1:
        raise HarpError(f"attack '{name}' needs at least one step")
    return base, steps


def build_attack(name: str, eps: float, norm: str = "linf", *, step_size: float | None = None, seed: int = 0,
                 batch_size: int = 500, state_dir: str | Path | None = None, **options: Any) -> Attack:
    """An attack by name: ``pgd20`` is PGD with 20 steps, ``cw20`` CW-loss PGD, ``apgd-ce`` 50 APGD steps.

    ``options`` are the attack's declared options (``pgd_restarts``, ``cw_kappa``, ``apgd_restarts``,
    ``autoattack_version``); one the attack does not take is an error naming both.

    Example::

        attack = build_attack("pgd20", 8 / 255, step_size=2 / 255, pgd_restarts=2)
        adversarial = attack(model, images, labels)
    """
    base, steps = split_attack_name(name)
    setting = AttackSetting(eps, norm, steps, step_size, seed, batch_size, state_dir)
    return ATTACKS.create(base, setting, **options)
