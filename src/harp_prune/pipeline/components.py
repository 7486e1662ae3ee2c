"""The components a config chooses, built from the registries: the pruner, each stage's objective, the training
attack and the evaluation attacks. ``validate_run`` builds them all once before anything expensive runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harp_prune.attacks import PGD, Attack
from harp_prune.config import (
    OPTION_BAGS,
    RunConfig,
    apply_dataset_defaults,
    check_taken,
    component_options,
    user_set,
    validate,
)
from harp_prune.data import Splits
from harp_prune.errors import HarpError
from harp_prune.evaluation.benchmark import build_attacks
from harp_prune.evaluation.sanity import parse_multiples
from harp_prune.pipeline.runtime import Context, open_context
from harp_prune.progress import log
from harp_prune.pruning import PRUNERS, Prunable, Pruner
from harp_prune.training import OBJECTIVES, Objective

STAGES = ("pretrain", "prune", "finetune")
_METHOD_BAG = next(bag for bag in OPTION_BAGS if bag.field == "method_options")


def training_attack(config: RunConfig) -> PGD:
    """The configured PGD threat model of training and validation."""
    a = config.attack
    return PGD(a.eps, a.step_size, a.steps, norm=a.norm)


def objective_for(config: RunConfig, stage: str) -> Objective:
    """The stage's objective (prune and finetune fall back to pretrain's) with the options set for it."""
    s = getattr(config, stage)
    name = s.objective or config.pretrain.objective
    cls = OBJECTIVES.get(name).factory
    return cls(training_attack(config) if cls.adversarial else None, **s.objective_options)


def select_attack(config: RunConfig, stage: str) -> Attack | None:
    """The attack of model selection: the training attack for adversarial objectives, none for natural ones."""
    return training_attack(config) if objective_for(config, stage).adversarial else None


def configured_prunable(config: RunConfig) -> Prunable:
    """What the config says to prune (prune.layer_types, prune.include_parameters, prune.exclude)."""
    return Prunable(config.prune.layer_types, config.prune.include_parameters, config.prune.exclude)


def method_options(config: RunConfig) -> Any:
    """The typed options of the configured pruning method: the values set for it (an option it does not take
    is an error naming both and where it was set), the rest at the method's defaults."""
    check_taken(config, _METHOD_BAG)
    return component_options(config, _METHOD_BAG, config.prune.method)


def make_pruner(config: RunConfig, input_shape: tuple[int, ...] | None = None) -> Pruner:
    """The configured pruner; ``input_shape`` (C, H, W) lets structured pruners trace layer shapes."""
    return PRUNERS.get(config.prune.method).factory(
        config.prune.sparsity, method_options(config), prunable=configured_prunable(config), seed=config.seed,
        input_shape=input_shape)


def evaluation_attacks(config: RunConfig, state_dir: Path | None = None) -> dict[str, Attack]:
    """``evaluate.attacks`` by name (default: ``pgd<evaluate.pgd_steps>``), all in the configured threat model,
    each with the evaluate.* options it takes."""
    a, e = config.attack, config.evaluate
    names = [n.strip() for n in (e.attacks or f"pgd{e.pgd_steps}").split(",") if n.strip()]
    if len(set(names)) != len(names):
        raise HarpError(f"evaluate.attacks lists an attack twice: '{e.attacks}'")
    return build_attacks(names, a.eps, a.norm, step_size=a.step_size, seed=config.seed,
                         batch_size=config.data.eval_batch_size, state_dir=state_dir, options=e.attack_options)


def validate_run(config: RunConfig, check_pruner: bool = True) -> None:
    """Refuse a config that could not run to the end, before anything expensive: the pruner (method,
    options, strategies, channel target), every stage's objective, the evaluation attacks and the eps sweep.

    ``check_pruner=False`` is for callers that prune with other configs (``harp compare`` checks each cell's).
    """
    if check_pruner:
        make_pruner(config)
    for stage in STAGES:
        objective_for(config, stage)
    evaluation_attacks(config)
    if config.evaluate.eps_sweep:
        parse_multiples(config.evaluate.eps_sweep)


def check_user_data(config: RunConfig, splits: Splits | None) -> None:
    """The user's own data (``Splits`` without ``info``) needs its own threat model: the configured data set's
    eps and step size (Fashion-MNIST's 0.1 and 0.025 by default) say nothing about it, so they are refused
    unless set. A γ0 nobody set is taken from the same defaults, and the log says so (it is tied to the number
    of steps per epoch, not to the images)."""
    if splits is None or splits.info is not None:
        return
    missing = [key for key in ("attack.eps", "attack.step_size") if not user_set(config, key)]
    if missing:
        raise HarpError(f"your own data (Splits without info) has no default threat model: set "
                        f"{' and '.join(missing)} (e.g. attack={{'eps': 8/255, 'step_size': 2/255}}); the "
                        f"{config.data.dataset} defaults are meaningless for it")
    if "gamma0" in PRUNERS.get(config.prune.method).takes() and not user_set(config, "prune.gamma0"):
        source = config.provenance.get("prune.gamma0", "default")
        origin = source.replace("default for ", "the default for ") if source != "default" else \
            f"{config.prune.method}'s own default"
        log(f"[harp] warning: prune.gamma0 is not set for your own data: taking γ0 = "
            f"{method_options(config).gamma0:g}, {origin}; set prune.gamma0 to choose it")


def prepare(config: RunConfig, splits: Splits | None = None, user_model: bool = False, *,
            record_config: bool = True, check_pruner: bool = True) -> Context:
    """Validate the whole run (``validate_run``) and the user's data (``check_user_data``), then open its context:
    data, loaders, device.

    A config changed in Python after ``build_config`` (or made as ``RunConfig()``) gets its data set's
    defaults for what nobody set, for the components chosen now, and the same checks as one from the CLI.
    """
    apply_dataset_defaults(config)
    validate(config)
    validate_run(config, check_pruner)
    check_user_data(config, splits)
    return open_context(config, splits, user_model, record_config=record_config)
