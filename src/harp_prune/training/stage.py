"""The epoch loop shared by pre-training, pruning and fine-tuning.

Each epoch: set the cosine learning rate, train, let the pruner update its schedule, measure natural and
robust accuracy on the selection split, keep the best checkpoint, and write ``last.pt`` atomically, so a
killed run continues with ``resume=True`` from its last finished epoch.
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
from harp_prune.training.metrics import MetricsLog
from harp_prune.training.objectives import Objective
from harp_prune.training.performance import Performance
from harp_prune.training.replicas import check_masks_agree


@dataclass
class StageSettings:
    name: str
    epochs: int
    lr: float
    momentum: float = 0.9
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


@dataclass
class StageResult:
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int | None = None
    best: dict[str, Any] = field(default_factory=dict)


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


def run_stage(settings: StageSettings, model: nn.Module, params: list[nn.Parameter], objective: Objective,
              train_loader: DataLoader, select_loader: DataLoader, select_attack: Attack | None,
              device: torch.device, out_dir: Path, meta: dict[str, Any], pruner: Pruner | None = None,
              resume: bool = False) -> StageResult:
    """Train ``params`` of ``model`` for ``settings.epochs`` epochs; leave the selected epoch's weights loaded.

    ``meta`` is stored in every checkpoint (model spec, pruning description, config). The best epoch is
    the one with the highest robust accuracy on ``select_loader`` (natural accuracy when no attack),
    counted only once ``pruner.ready`` (HARP: the budget was reached).

    Under torchrun the training forward runs through DDP (gradients averaged over ranks), the epoch's
    figures are global sums, the pruner's end-of-epoch decision (γ freeze) is rank 0's, the masks are
    compared across ranks after every epoch, and only rank 0 writes checkpoints (the others wait).
    """
    main = distributed.is_main()
    if main:
        out_dir.mkdir(parents=True, exist_ok=True)
    last_path, best_path = out_dir / "last.pt", out_dir / "best.pt"
    optimizer = torch.optim.SGD(params, lr=settings.lr, momentum=settings.momentum,
                                weight_decay=settings.weight_decay)
    result, start = StageResult(), 0
    best_state: dict[str, torch.Tensor] | None = None  # the selected epoch's weights, kept in memory
    if resume and last_path.exists():
        state = load_checkpoint(last_path, device)
        refuse_changed_settings(state.get("config"), meta.get("config") or {}, settings.result_keys,
                                settings.neutral_keys, last_path, settings.record_defaults)
        load_state_into(model, state["model"], str(last_path))
        optimizer.load_state_dict(state["optimizer"])
        if pruner is not None:
            pruner.load_state_dict(state["pruner"])
        result = StageResult(state["history"], state["best_epoch"], state["best"])
        if result.best_epoch is not None and best_path.exists():
            best_state = load_checkpoint(best_path, device)["model"]
        # the generators take CPU byte tensors, wherever map_location put the rest of the checkpoint
        torch.set_rng_state(state["rng"]["torch"].cpu())
        if torch.cuda.is_available() and state["rng"].get("cuda") is not None:
            torch.cuda.set_rng_state_all([generator.cpu() for generator in state["rng"]["cuda"]])
        start = state["epoch"] + 1
        log(f"[{settings.name}] resuming after epoch {start} of {settings.epochs} from {last_path}")
    perf = settings.performance
    perf.prepare(model)
    if settings.sync_bn:
        model = distributed.convert_sync_batchnorm(model, device)
    train_model = perf.compiled(distributed.wrap_for_training(model, device))
    metric = "robust_acc" if select_attack is not None else "natural_acc"
    log_epoch = settings.metrics.open(settings.name, start) if settings.metrics is not None and main else None
    if pruner is not None:  # one optimiser step per replay of a batch (Free-AT)
        pruner.plan(settings.epochs, len(train_loader) * objective.replays)
    for epoch in range(start, settings.epochs):
        lr = cosine_lr(settings.lr, epoch, settings.epochs)
        set_lr(optimizer, lr)
        _reseed_loader(train_loader, settings.seed, epoch)

        def status(epoch: int = epoch) -> dict[str, str]:
            fields = {}
            if pruner is not None:
                fields["sparsity"] = f"{1.0 - pruner.density():.4f}"
                if pruner.learns_rates:
                    fields["gamma"] = f"{pruner.gamma_for(epoch):.3g}"
            return fields

        try:
            train = train_epoch(
                train_model, train_loader, optimizer, objective, device,
                penalty=(lambda epoch=epoch: pruner.penalty(epoch)) if pruner is not None else None,
                after_step=pruner.after_step if pruner is not None else None,
                perturb=pruner.perturb_scores if pruner is not None else None,
                status=status, desc=f"{settings.name} {epoch + 1}/{settings.epochs}",
                show_progress=settings.show_progress, performance=perf,
            )
        except NonFiniteLoss as error:
            raise _diverged(settings, epoch, str(error)) from None
        if (broken := first_non_finite(model)) is not None:
            raise _diverged(settings, epoch, f"after its last step: {broken} holds NaN/inf")
        distributed.broadcast_state(model, buffers_only=True)  # BatchNorm running statistics: rank 0's
        row: dict[str, Any] = {"epoch": epoch, "lr": lr, "train_loss": train["loss"], "train_acc": train["accuracy"],
                               "seconds": train["seconds"]}
        if pruner is not None:
            row.update(distributed.broadcast_object(pruner.end_epoch(epoch)))
            if distributed.active():  # the γ freeze is rank 0's decision, whatever rounding did elsewhere
                pruner.load_state_dict(distributed.broadcast_object(pruner.state_dict()))
                check_masks_agree(model, f"{settings.name} epoch {epoch + 1}")
            row["sparsity"] = 1.0 - pruner.density()
        row["natural_acc"] = accuracy(model, select_loader, device)
        if select_attack is not None:
            row["robust_acc"] = accuracy(model, select_loader, device, select_attack)
        result.history.append(row)
        if log_epoch is not None:
            log_epoch(row)
        log(f"[{settings.name}] epoch {epoch + 1}/{settings.epochs} " + " ".join(
            f"{k}={v:.4g}" for k, v in row.items() if k not in ("epoch",) and isinstance(v, float)))
        selectable = pruner is None or pruner.ready
        if selectable and (result.best_epoch is None or row[metric] > result.best[metric]):
            result.best_epoch, result.best = epoch, dict(row)
            best_state = copy.deepcopy(model.state_dict())  # tensors and the masks' extra state
            if main:
                save_atomic({**meta, "stage": settings.name, "epoch": epoch, "model": best_state,
                             "metrics": row}, best_path)
        if main:
            save_atomic({
                **meta, "stage": settings.name, "epoch": epoch, "model": model.state_dict(),
                "optimizer": optimizer.state_dict(), "pruner": pruner.state_dict() if pruner is not None else {},
                "history": result.history, "best_epoch": result.best_epoch, "best": result.best,
                # the attacks' random starts draw from these: restoring them makes a resumed run match an
                # uninterrupted one
                "rng": {"torch": torch.get_rng_state(),
                        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None},
            }, last_path)
        distributed.barrier()
    if log_epoch is not None:
        log_epoch.close()
    if best_state is not None:
        load_state_into(model, best_state, f"the {settings.name} stage's epoch {result.best_epoch + 1}")
    elif settings.epochs > 0:
        log(f"[{settings.name}] no epoch was eligible for selection (budget never reached); keeping the last one")
    return result
