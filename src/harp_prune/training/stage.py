"""The epoch loop shared by pre-training, pruning and fine-tuning.

Each epoch: set the cosine learning rate, train, let the pruner update its schedule, measure natural and
robust accuracy on the selection split, keep the best checkpoint, and write ``last.pt`` atomically, so a
killed run continues with ``resume=True`` from its last finished epoch.

``run_stage`` reads as that list; each concern is one piece here: ``StageCheckpoints`` (resuming from and
writing ``last.pt`` and ``best.pt``), ``_EpochLoop`` (one epoch of training steps with the pruner's
end-of-epoch bookkeeping, and the selection measurements), ``_Selection`` (which epoch's weights the stage
leaves loaded). The optimiser is the one ``StageSettings.optimizer`` names (``training.optimizers``).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from harp_prune import distributed
from harp_prune.attacks import Attack
from harp_prune.errors import HarpError
from harp_prune.progress import log
from harp_prune.pruning import Pruner
from harp_prune.records import refuse_changed_settings
from harp_prune.training.checkpoint import load_checkpoint, load_state_into, save_atomic
from harp_prune.training.loop import NonFiniteLoss, accuracy, cosine_lr, first_non_finite, set_lr, train_epoch
from harp_prune.training.metrics import EpochLog, MetricsLog
from harp_prune.training.objectives import Objective
from harp_prune.training.optimizers import build_optimizer
from harp_prune.training.performance import Performance
from harp_prune.training.replicas import check_masks_agree


@dataclass
class StageSettings:
    name: str
    epochs: int
    lr: float
    momentum: float = 0.9  # SGD momentum; Adam's and AdamW's beta1
    weight_decay: float = 5e-4
    seed: int = 0
    show_progress: bool = True
    performance: Performance = field(default_factory=Performance)
    sync_bn: bool = False  # SyncBatchNorm across ranks (CUDA only)
    # config keys (top-level keys or sections) that shape this stage's result, and dotted keys among them
    # that do not: a last.pt made under other values of result_keys is refused on resume
    result_keys: tuple[str, ...] = ()
    neutral_keys: tuple[str, ...] = ()
    record_defaults: dict[str, Any] = field(default_factory=dict)  # the record of a default config (older records)
    metrics: MetricsLog | None = None  # where each epoch's history row goes as it is made (rank 0 writes)
    optimizer: str = "sgd"  # a name of training.optimizers.OPTIMIZERS (last, so positional callers keep working)


@dataclass
class StageResult:
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int | None = None
    best: dict[str, Any] = field(default_factory=dict)


@dataclass
class StageData:
    """What a stage trains on, and what selects its epoch: robust accuracy on ``select_loader`` under
    ``select_attack``, or natural accuracy when there is no attack."""

    train_loader: DataLoader
    select_loader: DataLoader
    select_attack: Attack | None = None

    @property
    def metric(self) -> str:
        return "robust_acc" if self.select_attack is not None else "natural_acc"


def _rng_state() -> dict[str, Any]:
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def _restore_rng(rng: dict[str, Any]) -> None:
    # the generators take CPU byte tensors, wherever map_location put the rest of the checkpoint
    torch.set_rng_state(rng["torch"].cpu())
    if torch.cuda.is_available() and rng.get("cuda") is not None:
        torch.cuda.set_rng_state_all([generator.cpu() for generator in rng["cuda"]])


class StageCheckpoints:
    """A stage's checkpoints in ``out_dir``: ``best.pt`` (the selected epoch's weights) and ``last.pt``
    (everything an interrupted run continues from), each carrying ``meta`` (model spec, pruning description,
    config). ``resume``: continue from ``last.pt`` when there is one. Only rank 0 writes."""

    def __init__(self, out_dir: Path, meta: dict[str, Any], resume: bool = False) -> None:
        self.out_dir, self.meta, self.resume = Path(out_dir), meta, resume
        self.last_path, self.best_path = self.out_dir / "last.pt", self.out_dir / "best.pt"
        self.writes = distributed.is_main()

    def restore(self, settings: StageSettings, model: nn.Module, optimizer: torch.optim.Optimizer,
                pruner: Pruner | None, device: torch.device) -> tuple[int, StageResult, dict[str, Any] | None]:
        """(the first epoch to train, the results so far, the selected epoch's weights if any): from ``last.pt``
        when resuming, which also restores the model, optimiser, pruner and random generators."""
        if self.writes:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        if not (self.resume and self.last_path.exists()):
            return 0, StageResult(), None
        state = load_checkpoint(self.last_path, device)
        refuse_changed_settings(state.get("config"), self.meta.get("config") or {}, settings.result_keys,
                                settings.neutral_keys, self.last_path, settings.record_defaults)
        load_state_into(model, state["model"], str(self.last_path))
        optimizer.load_state_dict(state["optimizer"])
        if pruner is not None:
            pruner.load_state_dict(state["pruner"])
        result = StageResult(state["history"], state["best_epoch"], state["best"])
        best_state = None
        if result.best_epoch is not None and self.best_path.exists():
            best_state = load_checkpoint(self.best_path, device)["model"]
        _restore_rng(state["rng"])
        start = state["epoch"] + 1
        log(f"[{settings.name}] resuming after epoch {start} of {settings.epochs} from {self.last_path}")
        return start, result, best_state

    def save_best(self, stage: str, epoch: int, state: dict[str, Any], row: dict[str, Any]) -> None:
        if self.writes:
            save_atomic({**self.meta, "stage": stage, "epoch": epoch, "model": state, "metrics": row}, self.best_path)

    def save_last(self, stage: str, epoch: int, model: nn.Module, optimizer: torch.optim.Optimizer,
                  pruner: Pruner | None, result: StageResult) -> None:
        if self.writes:
            save_atomic({
                **self.meta, "stage": stage, "epoch": epoch, "model": model.state_dict(),
                "optimizer": optimizer.state_dict(), "pruner": pruner.state_dict() if pruner is not None else {},
                "history": result.history, "best_epoch": result.best_epoch, "best": result.best,
                # the attacks' random starts draw from these: restoring them makes a resumed run match an
                # uninterrupted one
                "rng": _rng_state(),
            }, self.last_path)


class _Selection:
    """The selected epoch: the highest ``metric`` among the epochs the pruner counts (``pruner.ready``;
    HARP: once the budget was reached), its weights kept in memory to be loaded at the end."""

    def __init__(self, result: StageResult, metric: str, state: dict[str, Any] | None) -> None:
        self.result, self.metric, self.state = result, metric, state

    def offer(self, epoch: int, row: dict[str, Any], model: nn.Module, pruner: Pruner | None) -> bool:
        """Select ``epoch`` if it beats the selection so far; returns whether it did."""
        if pruner is not None and not pruner.ready:
            return False
        if self.result.best_epoch is not None and not row[self.metric] > self.result.best[self.metric]:
            return False
        self.result.best_epoch, self.result.best = epoch, dict(row)
        self.state = copy.deepcopy(model.state_dict())  # tensors and the masks' extra state
        return True

    def load_into(self, model: nn.Module, settings: StageSettings) -> None:
        if self.state is not None:
            load_state_into(model, self.state, f"the {settings.name} stage's epoch {self.result.best_epoch + 1}")
        elif settings.epochs > 0:
            log(f"[{settings.name}] no epoch was eligible for selection (budget never reached); keeping the last one")


def _reseed_loader(loader: DataLoader, seed: int, epoch: int) -> None:
    """Make the epoch's shuffling a function of (seed, epoch) alone, so a resumed run sees the same order."""
    if hasattr(loader.sampler, "set_epoch"):
        loader.sampler.set_epoch(epoch)
    if loader.generator is not None:
        loader.generator.manual_seed(seed * 1_000_003 + epoch)


def _diverged(settings: StageSettings, epoch: int, detail: str) -> HarpError:
    return HarpError(f"{settings.name} epoch {epoch + 1}, {detail}; training diverged, so the stage stopped "
                     f"before writing this epoch's checkpoints: lower {settings.name}.lr (now {settings.lr:g}) and "
                     "rerun without --resume")


class _EpochLoop:
    """One epoch of a stage: the training steps, the pruner's end-of-epoch update, the selection measurements.

    Under torchrun the training forward runs through DDP (gradients averaged over ranks), the epoch's
    figures are global sums, the pruner's end-of-epoch decision (γ freeze) is rank 0's and the masks are
    compared across ranks after every epoch.
    """

    def __init__(self, settings: StageSettings, model: nn.Module, optimizer: torch.optim.Optimizer,
                 objective: Objective, data: StageData, device: torch.device, pruner: Pruner | None) -> None:
        self.settings, self.optimizer, self.objective = settings, optimizer, objective
        self.data, self.device, self.pruner = data, device, pruner
        settings.performance.prepare(model)
        # the model the stage measures and saves (its BatchNorms made SyncBatchNorm when asked) ...
        self.model = distributed.convert_sync_batchnorm(model, device) if settings.sync_bn else model
        # ... and the one the training steps call: the same parameters, under DDP and torch.compile when asked
        self.train_model = settings.performance.compiled(distributed.wrap_for_training(self.model, device))

    def run(self, epoch: int) -> dict[str, Any]:
        """Train epoch ``epoch``; its history row (training figures, pruner's fields, selection accuracies)."""
        row = self._train(epoch)
        if self.pruner is not None:
            row.update(self._end_pruning_epoch(epoch))
        row["natural_acc"] = accuracy(self.model, self.data.select_loader, self.device)
        if self.data.select_attack is not None:
            row["robust_acc"] = accuracy(self.model, self.data.select_loader, self.device, self.data.select_attack)
        return row

    def _train(self, epoch: int) -> dict[str, Any]:
        settings, pruner = self.settings, self.pruner
        lr = cosine_lr(settings.lr, epoch, settings.epochs)
        set_lr(self.optimizer, lr)
        _reseed_loader(self.data.train_loader, settings.seed, epoch)
        try:
            train = train_epoch(
                self.train_model, self.data.train_loader, self.optimizer, self.objective, self.device,
                penalty=(lambda: pruner.penalty(epoch)) if pruner is not None else None,
                after_step=pruner.after_step if pruner is not None else None,
                perturb=pruner.perturb_scores if pruner is not None else None,
                status=lambda: self._status(epoch), desc=f"{settings.name} {epoch + 1}/{settings.epochs}",
                show_progress=settings.show_progress, performance=settings.performance,
            )
        except NonFiniteLoss as error:
            raise _diverged(settings, epoch, str(error)) from None
        if (broken := first_non_finite(self.model)) is not None:
            raise _diverged(settings, epoch, f"after its last step: {broken} holds NaN/inf")
        distributed.broadcast_state(self.model, buffers_only=True)  # BatchNorm running statistics: rank 0's
        return {"epoch": epoch, "lr": lr, "train_loss": train["loss"], "train_acc": train["accuracy"],
                "seconds": train["seconds"]}

    def _status(self, epoch: int) -> dict[str, str]:
        """The progress bar's extra fields: sparsity, and γ for methods that learn rates."""
        if self.pruner is None:
            return {}
        fields = {"sparsity": f"{1.0 - self.pruner.density():.4f}"}
        if self.pruner.learns_rates:
            fields["gamma"] = f"{self.pruner.gamma_for(epoch):.3g}"
        return fields

    def _end_pruning_epoch(self, epoch: int) -> dict[str, Any]:
        assert self.pruner is not None
        fields = distributed.broadcast_object(self.pruner.end_epoch(epoch))
        if distributed.active():  # the γ freeze is rank 0's decision, whatever rounding did elsewhere
            self.pruner.load_state_dict(distributed.broadcast_object(self.pruner.state_dict()))
            check_masks_agree(self.model, f"{self.settings.name} epoch {epoch + 1}")
        return {**fields, "sparsity": 1.0 - self.pruner.density()}


def _report(settings: StageSettings, row: dict[str, Any], epoch_log: EpochLog | None) -> None:
    if epoch_log is not None:
        epoch_log(row)
    log(f"[{settings.name}] epoch {row['epoch'] + 1}/{settings.epochs} " + " ".join(
        f"{k}={v:.4g}" for k, v in row.items() if k != "epoch" and isinstance(v, float)))


def run_stage(settings: StageSettings, model: nn.Module, params: list[nn.Parameter], objective: Objective,
              data: StageData, checkpoints: StageCheckpoints, device: torch.device,
              pruner: Pruner | None = None) -> StageResult:
    """Train ``params`` of ``model`` for ``settings.epochs`` epochs; leave the selected epoch's weights loaded.

    The best epoch is the one with the highest robust accuracy on ``data.select_loader`` (natural accuracy
    when there is no attack), counted only once ``pruner.ready`` (HARP: the budget was reached). Every epoch
    writes ``checkpoints.last_path``, a new best epoch ``checkpoints.best_path``; with ``checkpoints.resume``
    the stage continues after the last epoch ``last.pt`` holds. Under torchrun only rank 0 writes (the others
    wait); see ``_EpochLoop`` for what else is distributed.
    """
    optimizer = build_optimizer(settings.optimizer, params, settings.lr, settings.momentum, settings.weight_decay)
    start, result, best_state = checkpoints.restore(settings, model, optimizer, pruner, device)
    loop = _EpochLoop(settings, model, optimizer, objective, data, device, pruner)
    if pruner is not None:  # the stage's length in optimiser steps: one per replay of a batch (Free-AT)
        pruner.plan(settings.epochs, len(data.train_loader) * objective.replays)
    selection = _Selection(result, data.metric, best_state)
    epoch_log = settings.metrics.open(settings.name, start) if settings.metrics is not None and checkpoints.writes \
        else None
    for epoch in range(start, settings.epochs):
        row = loop.run(epoch)
        result.history.append(row)
        _report(settings, row, epoch_log)
        if selection.offer(epoch, row, loop.model, pruner):
            checkpoints.save_best(settings.name, epoch, selection.state, row)
        checkpoints.save_last(settings.name, epoch, loop.model, optimizer, pruner, result)
        distributed.barrier()
    if epoch_log is not None:
        epoch_log.close()
    selection.load_into(loop.model, settings)
    return result
