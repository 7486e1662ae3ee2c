"""The three stages: adversarial pre-training, pruning (masks learned, weights frozen), fine-tuning (masks fixed).

Each stage returns a ``StageOutcome`` (the model, its pruner, the history and the selected epoch) that ``run``,
``harp compare`` and Python callers use directly; ``<out_dir>/<stage>/final.pt`` is written for resuming and
for users. ``resume=True`` takes a stage finished earlier with the same settings from its final.pt and
continues an interrupted one from its last finished epoch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from harp_prune import distributed
from harp_prune.config import RunConfig
from harp_prune.errors import HarpError
from harp_prune.evaluation import budget_line
from harp_prune.pipeline.components import make_pruner, objective_for, prepare, select_attack
from harp_prune.pipeline.resume import RESULT_KEYS, RESULT_NEUTRAL_KEYS, check_checkpoint_model, refuse_changed_stage
from harp_prune.pipeline.runtime import Context, seed_everything
from harp_prune.progress import log
from harp_prune.pruning import Pruner, masked_layers
from harp_prune.training import (
    MetricsLog,
    Performance,
    StageCheckpoints,
    StageData,
    StageResult,
    StageSettings,
    build_from_spec,
    check_checkpoint_exists,
    load_checkpoint,
    model_from_checkpoint,
    run_stage,
    save_atomic,
)


@dataclass
class StageOutcome:
    """What a stage made: the model (with its masks), the pruner (None before pruning), the per-epoch history,
    the selected epoch with its metrics, the pruner's budget report, and the checkpoint written."""

    stage: str
    model: nn.Module
    pruner: Pruner | None
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    budget: dict[str, Any] | None = None
    path: Path | None = None

    @classmethod
    def from_checkpoint(cls, stage: str, model: nn.Module, pruner: Pruner | None, checkpoint: dict[str, Any],
                        path: Path) -> StageOutcome:
        return cls(stage, model, pruner, checkpoint.get("history", []), checkpoint.get("best_epoch"),
                   checkpoint.get("metrics", {}), checkpoint.get("budget"), path)


def stage_context(config: RunConfig, ctx: Context | None, splits, model: nn.Module | None,
                  resume_stages: tuple[str, ...] = (), record_config: bool = True) -> Context:
    """The run's shared context (prepared here unless given, checking ``resume_stages``' checkpoints); a context
    made for another config would make the stage read two configs."""
    if ctx is None:
        return prepare(config, splits, user_model=model is not None, record_config=record_config, model=model,
                       resume_stages=resume_stages)
    if ctx.config is not config:
        raise HarpError("the context was prepared for another config; pass the config it was made with")
    return ctx


def check_source(config: RunConfig, ctx: Context | None, stage: str, source: Path, reads_it: bool,
                 resume: bool) -> None:
    """A stage started on its own that will read ``source``: check that it exists before the context records
    ``config.yaml``, so that a stage which cannot start leaves no folder behind (a finished stage resumed
    reads its own checkpoint instead)."""
    finished = resume and (Path(config.out_dir) / stage / "final.pt").is_file()
    if ctx is None and reads_it and not finished:
        check_checkpoint_exists(source)


def source_model(ctx: Context, path: Path, model: nn.Module | None) -> tuple[nn.Module, Pruner | None, dict]:
    """The model of a stage checkpoint, refusing a zoo checkpoint of another architecture; reads the file once."""
    checkpoint = load_checkpoint(path)
    check_checkpoint_model(checkpoint, path, ctx.config, model is not None)
    return (*model_from_checkpoint(checkpoint, str(path), model, ctx.device), checkpoint)


def _meta(ctx: Context, pruner: Pruner | None) -> dict[str, Any]:
    return {"model_spec": ctx.spec(), "pruning": pruner.describe() if pruner is not None else None,
            "config": ctx.config.to_dict()}


def _settings(ctx: Context, stage: str) -> StageSettings:
    s, c = getattr(ctx.config, stage), ctx.config
    performance = Performance(c.amp, c.channels_last, c.compile, augment=bool(c.data.augment))
    return StageSettings(stage, s.epochs, s.lr, s.momentum, s.weight_decay, c.seed,
                         c.progress and distributed.is_main(), performance, c.sync_bn, RESULT_KEYS[stage],
                         RESULT_NEUTRAL_KEYS, RunConfig().to_dict(), MetricsLog(ctx.out_dir, c.tensorboard),
                         s.optimizer)


def _train(ctx: Context, stage: str, model: nn.Module, params: list, pruner: Pruner | None, resume: bool,
           settings: StageSettings | None = None) -> StageResult:
    data = StageData(ctx.train_loader, ctx.select_loader, select_attack(ctx.config, stage))
    checkpoints = StageCheckpoints(ctx.out_dir / stage, _meta(ctx, pruner), resume)
    return run_stage(settings or _settings(ctx, stage), model, params, objective_for(ctx.config, stage), data,
                     checkpoints, ctx.device, pruner=pruner if stage == "prune" else None)


def _finish(ctx: Context, stage: str, model: nn.Module, pruner: Pruner | None, result: StageResult) -> StageOutcome:
    path = ctx.out_dir / stage / "final.pt"
    budget = pruner.budget_report() if pruner is not None else None
    if distributed.is_main():
        save_atomic({**_meta(ctx, pruner), "stage": stage, "model": model.state_dict(), "history": result.history,
                     "best_epoch": result.best_epoch, "metrics": result.best, "budget": budget}, path)
    distributed.barrier()
    return StageOutcome(stage, model, pruner, result.history, result.best_epoch, result.best, budget, path)


def _finished_stage(ctx: Context, stage: str, model: nn.Module | None) -> StageOutcome | None:
    """The outcome of ``stage`` if an earlier run finished it with the same settings (for ``resume``), else None."""
    stage_dir = ctx.out_dir / stage
    final = stage_dir / "final.pt"
    if not final.exists():
        if not (stage_dir / "last.pt").exists():
            log(f"[{stage}] nothing to resume in {stage_dir}: starting the stage afresh")
        return None
    finished, pruner, checkpoint = source_model(ctx, final, model)
    refuse_changed_stage(ctx.config, stage, final, checkpoint)
    log(f"[{stage}] finished earlier: {final}")
    return StageOutcome.from_checkpoint(stage, finished, pruner, checkpoint, final)


def pretrain(config: RunConfig, *, model: nn.Module | None = None, splits=None, resume: bool = False,
             ctx: Context | None = None) -> StageOutcome:
    """Stage 1: adversarial pre-training of a dense model; writes ``pretrain/final.pt``.

    ``model`` (default: the configured zoo model) is trained in place; ``splits`` is your own data (see ``run``).
    Returns the ``StageOutcome``: ``model``, ``history``, ``best_epoch``, ``metrics``, ``path``.

    Example::

        dense = hp.pretrain(hp.build_config(pretrain={"epochs": 2}, out_dir="runs/api"))
        print(dense.best_epoch, dense.metrics)
    """
    ctx = stage_context(config, ctx, splits, model, ("pretrain",) if resume else ())
    if resume and (finished := _finished_stage(ctx, "pretrain", model)) is not None:
        return finished
    seed_everything(config.seed)
    model = (model if model is not None else build_from_spec(ctx.spec())).to(ctx.device)
    result = _train(ctx, "pretrain", model, list(model.parameters()), None, resume)
    return _finish(ctx, "pretrain", model, None, result)


def prune(config: RunConfig, *, model: nn.Module | None = None, splits=None, resume: bool = False,
          ctx: Context | None = None) -> StageOutcome:
    """Stage 2: learn masks on the dense model (weights frozen); writes ``prune/final.pt``.

    The dense model is ``model`` as it is when given (and ``prune.source`` is not set), else it is loaded from
    ``prune.source`` or ``pretrain/final.pt``. The selected epoch's rates are then projected onto the budget.
    A given ``model`` gets its masks in place. Returns the ``StageOutcome`` with the ``pruner`` and its ``budget``.

    Example::

        pruned = hp.prune(config, model=dense.model)
        print(pruned.budget, pruned.pruner.report(pruned.model).sparsity)
    """
    source = Path(config.prune.source or Path(config.out_dir) / "pretrain" / "final.pt")
    check_source(config, ctx, "prune", source, model is None or bool(config.prune.source), resume)
    ctx = stage_context(config, ctx, splits, model, ("prune",) if resume else ())
    if resume and (finished := _finished_stage(ctx, "prune", model)) is not None:
        return finished
    if model is None or config.prune.source:
        model, _, _ = source_model(ctx, source, model)
    model = model.to(ctx.device)
    seed_everything(config.seed)
    pruner = make_pruner(config, tuple(ctx.spec()["input_shape"]))
    if masked_layers(model):
        raise HarpError(f"{source} is already pruned; prune a dense (pretrain) checkpoint")
    pruner.attach(model)
    params = pruner.trainable_parameters(model)
    settings = _settings(ctx, "prune")
    if not pruner.needs_training:
        settings.epochs = 0
    elif settings.epochs == 0:
        log("[prune] 0 pruning epochs: nothing is learned; the masks are the initial strategy's, on the initial "
            "scores, projected onto the budget")
    result = _train(ctx, "prune", model, params, pruner, resume, settings)
    shift = pruner.finalize()
    report, budget = pruner.report(model), pruner.budget_report()
    moved = f"the budget projection moved the rates by {shift:+.4f}" if shift else "met as learned, not projected"
    log(f"[prune] {budget_line(budget)} (--sparsity {pruner.sparsity} of {budget['sparsity_of']}), "
        f"{report.kept:,} of {report.total:,} weights kept; {moved}")
    return _finish(ctx, "prune", model, pruner, result)


def finetune(config: RunConfig, *, model: nn.Module | None = None, pruner: Pruner | None = None, splits=None,
             resume: bool = False, ctx: Context | None = None) -> StageOutcome:
    """Stage 3: train weights and BatchNorm with the masks fixed; writes ``finetune/final.pt``.

    With ``pruner`` (the prune stage's outcome: ``finetune(config, model=pruned.model, pruner=pruned.pruner)``)
    the masked ``model`` is fine-tuned as it is. Otherwise the pruned model is loaded from ``finetune.source``
    or ``prune/final.pt``, into ``model`` when given (a user-defined architecture). The model is trained in
    place. Returns the ``StageOutcome``.

    Example::

        tuned = hp.finetune(config, model=pruned.model, pruner=pruned.pruner)
        hp.export_model(tuned.model, "sparse", "model.sparse.safetensors", input_shape=(1, 28, 28))
    """
    source = Path(config.finetune.source or Path(config.out_dir) / "prune" / "final.pt")
    check_source(config, ctx, "finetune", source, pruner is None or model is None or bool(config.finetune.source),
                 resume)
    ctx = stage_context(config, ctx, splits, model, ("finetune",) if resume else ())
    if resume and (finished := _finished_stage(ctx, "finetune", model)) is not None:
        return finished
    if pruner is None or model is None or config.finetune.source:
        model, pruner, _ = source_model(ctx, source, model)
    if pruner is None:
        raise HarpError(f"{source} is not a pruned checkpoint; fine-tune the output of 'harp prune'")
    seed_everything(config.seed)
    frozen = {id(p) for layer in pruner.layers for p in (layer.scores, layer.rate)}
    for param in model.parameters():  # the mask stays fixed: scores and rates frozen, the rest trained
        param.requires_grad_(id(param) not in frozen)
    params = [p for p in model.parameters() if p.requires_grad]
    result = _train(ctx, "finetune", model, params, pruner, resume)
    return _finish(ctx, "finetune", model, pruner, result)
