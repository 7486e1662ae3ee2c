"""The components a config chooses, built from the registries: the pruner, each stage's objective, the training
attack and the evaluation attacks. ``validate_run`` builds them all once before anything expensive runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from harp_prune.attacks import PGD, Attack
from harp_prune.config import (
    METHOD_BAG,
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
from harp_prune.pipeline.resume import check_resumable
from harp_prune.pipeline.runtime import Context, open_context, record_run_config
from harp_prune.progress import log
from harp_prune.pruning import PRUNERS, Prunable, Pruner, find_sites, no_prunable_error
from harp_prune.training import METRICS_FILE, OBJECTIVES, Objective, build_from_spec, read_metrics

STAGES = ("pretrain", "prune", "finetune")


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
    check_taken(config, METHOD_BAG)
    return component_options(config, METHOD_BAG, config.prune.method)


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


def check_prunable(ctx: Context, model: nn.Module | None) -> None:
    """The configured selection prunes something in the run's model (the caller's, else the zoo model the data
    calls for) and each of its patterns matches (``find_sites`` refuses one that matches nothing): now, not
    when the prune stage starts after pre-training."""
    prunable = configured_prunable(ctx.config)
    if model is None:
        if ctx.splits.info is None:  # the user's data without a model: no zoo model to check (none could be built)
            return
        with torch.random.fork_rng(devices=[]):  # a throw-away model: the run's random stream stays as it was
            model = build_from_spec(ctx.spec())
    if not find_sites(model, prunable)[0]:
        raise no_prunable_error(prunable)


def prepare(config: RunConfig, splits: Splits | None = None, user_model: bool = False, *,
            record_config: bool = True, check_pruner: bool = True, model: nn.Module | None = None,
            resume_stages: tuple[str, ...] = ()) -> Context:
    """Validate the whole run (``validate_run``), the checkpoints of the ``resume_stages`` it continues
    (``check_resumable``), the user's data (``check_user_data``) and what is pruned in ``model`` (or the zoo
    model, ``check_prunable``), then open its context: data, loaders, device. ``<out_dir>/config.yaml`` is
    written (``record_config``) only once every check has passed.

    A config changed in Python after ``build_config`` (or made as ``RunConfig()``) gets its data set's
    defaults for what nobody set, for the components chosen now, and the same checks as one from the CLI.
    """
    apply_dataset_defaults(config)
    validate(config)
    validate_run(config, check_pruner)
    check_user_data(config, splits)
    check_resumable(config, resume_stages, model is not None)
    if record_config:  # the stages append to the metrics file: a line they could not read is refused now
        read_metrics(Path(config.out_dir) / METRICS_FILE)
    ctx = open_context(config, splits, user_model or model is not None, record_config=False)
    if check_pruner:
        check_prunable(ctx, model)
    if record_config:
        record_run_config(ctx)
    return ctx
