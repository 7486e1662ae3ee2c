"""One training epoch and accuracy measurement; free of global state so that DDP can wrap the model."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch
from torch import nn
from torch.utils.data import DataLoader

from harp_prune.attacks import Attack
from harp_prune.progress import progress
from harp_prune.training.objectives import Objective


def cosine_lr(base_lr: float, epoch: int, epochs: int) -> float:
    """Per-epoch cosine annealing from ``base_lr`` (epoch 0) towards 0."""
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * epoch / max(epochs, 1)))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def train_epoch(model: nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer, objective: Objective,
                device: torch.device, *, penalty: Callable[[], torch.Tensor | None] | None = None,
                status: Callable[[], dict[str, str]] | None = None, desc: str = "train",
                show_progress: bool = True) -> dict[str, float]:
    """Train for one pass over ``loader``; returns mean loss, accuracy (on the objective's logits), penalty.

    ``penalty`` is called once per step and added to the loss (HARP's γ L_hw); ``status`` gives extra
    fields for the progress bar (γ, sparsity), refreshed every few batches.
    """
    model.train()
    totals = {"loss": 0.0, "correct": 0.0, "penalty": 0.0, "count": 0}
    started = time.perf_counter()
    bar = progress(loader, desc, show_progress)
    for step, (images, labels) in enumerate(bar):
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        for _ in range(objective.replays):  # Free-AT: an optimizer step per replay of the batch
            loss, logits = objective.loss(model, images, labels)
            extra = penalty() if penalty is not None else None
            total = loss + extra if extra is not None else loss
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            objective.after_backward()
            optimizer.step()
        n = len(labels)
        totals["loss"] += float(loss.detach()) * n
        totals["correct"] += float((logits.argmax(1) == labels).sum())
        totals["penalty"] += float(extra.detach()) * n if extra is not None else 0.0
        totals["count"] += n
        if show_progress and hasattr(bar, "set_postfix") and (step % 5 == 0):
            fields = {"loss": f"{totals['loss'] / totals['count']:.3f}",
                      "acc": f"{totals['correct'] / totals['count']:.3f}"}
            if status is not None:
                fields.update(status())
            bar.set_postfix(fields, refresh=False)
    count = max(totals["count"], 1)
    return {"loss": totals["loss"] / count, "accuracy": totals["correct"] / count,
            "penalty": totals["penalty"] / count, "seconds": time.perf_counter() - started,
            "images": totals["count"]}


def predictions(model: nn.Module, loader: DataLoader, device: torch.device, attack: Attack | None = None,
                desc: str = "eval", show_progress: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(predicted, true) labels over ``loader``, on attacked inputs when ``attack`` is given."""
    was_training = model.training
    model.eval()
    predicted, truth = [], []
    try:
        for images, labels in progress(loader, desc, show_progress):
            images, labels = images.to(device), labels.to(device)
            if attack is not None:
                images = attack(model, images, labels)
            with torch.no_grad():
                predicted.append(model(images).argmax(1).cpu())
            truth.append(labels.cpu())
    finally:
        model.train(was_training)
    return torch.cat(predicted), torch.cat(truth)


def accuracy(model: nn.Module, loader: DataLoader, device: torch.device, attack: Attack | None = None,
             desc: str = "eval", show_progress: bool = False) -> float:
    """Accuracy over ``loader`` (robust accuracy when ``attack`` is given)."""
    predicted, truth = predictions(model, loader, device, attack, desc, show_progress)
    return float((predicted == truth).float().mean()) if len(truth) else float("nan")
