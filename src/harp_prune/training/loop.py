"""One training epoch and accuracy measurement; free of global state so that DDP can wrap the model."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.utils.data import DataLoader

from harp_prune import distributed
from harp_prune.attacks import Attack
from harp_prune.attacks.base import eval_mode, fixed_weights
from harp_prune.errors import HarpError
from harp_prune.progress import progress
from harp_prune.training.objectives import Objective
from harp_prune.training.performance import Performance

# On a GPU the running sums are checked for NaN/inf every this many steps (each check waits for the device);
# on the CPU, where a check costs nothing, after every step.
FINITE_CHECK_EVERY = 16


class NonFiniteLoss(HarpError):
    """The training loss (or the pruner's penalty) became NaN or infinite: training diverged."""

    def __init__(self, step: int, what: str, value: float, exact: bool) -> None:
        self.step, self.what, self.value, self.exact = step, what, value, exact
        super().__init__(f"{'step' if exact else 'by step'} {step}: the training {what} is {value}")


def _check_finite(sums: torch.Tensor, step: int, exact: bool) -> None:
    """Raise NonFiniteLoss when a running sum (loss, correct, penalty) is no longer finite: one non-finite
    step makes the sum non-finite for good, so checking the sums every few steps misses none."""
    if bool(torch.isfinite(sums).all()):
        return
    loss_sum, _, penalty_sum = sums.tolist()
    what, value = ("loss", loss_sum) if not math.isfinite(loss_sum) else ("penalty", penalty_sum)
    raise NonFiniteLoss(step, what, value, exact)


def cosine_lr(base_lr: float, epoch: int, epochs: int) -> float:
    """Per-epoch cosine annealing from ``base_lr`` (epoch 0) towards 0."""
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * epoch / max(epochs, 1)))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


@contextmanager
def running_stats_frozen(model: nn.Module) -> Iterator[None]:
    """BatchNorm layers normalise with the batch's statistics but leave their running statistics alone: the
    second (perturbed) pass of an S2AP step must not move the statistics the model is evaluated with."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    saved = [(m.momentum, m.num_batches_tracked.clone() if m.num_batches_tracked is not None else None)
             for m in norms]
    for m in norms:
        m.momentum = 0.0  # running = (1 - 0) * running + 0 * batch
    try:
        yield
    finally:
        for m, (momentum, tracked) in zip(norms, saved, strict=True):
            m.momentum = momentum
            if tracked is not None:
                m.num_batches_tracked.copy_(tracked)


def train_epoch(model: nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer, objective: Objective,
                device: torch.device, *, penalty: Callable[[], torch.Tensor | None] | None = None,
                after_step: Callable[[], None] | None = None,
                perturb: Callable[[], Callable[[], None] | None] | None = None,
                status: Callable[[], dict[str, str]] | None = None, desc: str = "train",
                show_progress: bool = True, performance: Performance | None = None) -> dict[str, float]:
    """Train for one pass over ``loader``; returns mean loss, accuracy (on the objective's logits), penalty.

    Raises :class:`NonFiniteLoss` at the first non-finite loss or penalty (on a GPU within
    ``FINITE_CHECK_EVERY`` steps of it, and always before returning).

    ``penalty`` is called once per step and added to the loss (HARP's γ L_hw), outside autocast so the
    size loss stays fp32. ``perturb`` is called after the first backward pass of each step: when it returns
    a restore function (S2AP moved the scores), the loss is computed and back-propagated again at the
    perturbed scores, the scores are restored, and the optimiser steps with those gradients. ``after_step``
    is called after every optimiser step (the frontier pruner's rate update). ``status`` gives extra fields
    for the progress bar (γ, sparsity), refreshed every few batches. ``performance`` switches on bf16
    autocast (attack and forward) and channels_last.
    In a distributed run the returned figures are sums over all ranks (the global epoch).
    """
    perf = performance or Performance()
    model.train()
    # Running sums stay on the device (loss * n, correct, penalty * n): no host sync per step, which would
    # stall a GPU; they are read only for the progress bar and once at the end.
    sums = torch.zeros(3, dtype=torch.float32 if device.type == "mps" else torch.float64, device=device)
    count = steps = 0
    started = time.perf_counter()
    bar = progress(loader, desc, show_progress)
    for step, (images, labels) in enumerate(bar):
        images, labels = perf.batch(images, device), labels.to(device, non_blocking=True)
        for _ in range(objective.replays):  # Free-AT: an optimizer step per replay of the batch
            with perf.autocast(device):
                loss, logits = objective.loss(model, images, labels)
            extra = penalty() if penalty is not None else None
            total = loss + extra if extra is not None else loss
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            restore = perturb() if perturb is not None else None
            if restore is not None:
                with perf.autocast(device), running_stats_frozen(model):
                    perturbed_loss, _ = objective.loss(model, images, labels)
                perturbed_extra = penalty() if penalty is not None else None
                optimizer.zero_grad(set_to_none=True)
                (perturbed_loss + perturbed_extra if perturbed_extra is not None else perturbed_loss).backward()
                restore()
            objective.after_backward()
            optimizer.step()
            if after_step is not None:
                after_step()
        n = len(labels)
        with torch.no_grad():
            sums[0] += loss.detach().to(sums.dtype) * n
            sums[1] += (logits.argmax(1) == labels).sum()
            if extra is not None:
                sums[2] += extra.detach().to(sums.dtype) * n
        count, steps = count + n, step + 1
        if device.type == "cpu" or steps % FINITE_CHECK_EVERY == 0:
            _check_finite(sums, steps, exact=device.type == "cpu")
        if show_progress and hasattr(bar, "set_postfix") and (step % 5 == 0):
            loss_sum, correct = sums[:2].tolist()
            fields = {"loss": f"{loss_sum / count:.3f}", "acc": f"{correct / count:.3f}"}
            if status is not None:
                fields.update(status())
            bar.set_postfix(fields, refresh=False)
    _check_finite(sums, steps, exact=device.type == "cpu")
    loss_sum, correct, penalty_sum = sums.tolist()
    totals = {"loss": loss_sum, "correct": correct, "penalty": penalty_sum, "count": count}
    totals = distributed.all_reduce_sum(totals)
    count = max(totals["count"], 1)
    return {"loss": totals["loss"] / count, "accuracy": totals["correct"] / count,
            "penalty": totals["penalty"] / count, "seconds": time.perf_counter() - started,
            "images": int(totals["count"])}


def first_non_finite(model: nn.Module) -> str | None:
    """The name of the first parameter or buffer holding NaN/inf, if any."""
    return next((name for name, tensor in model.state_dict().items()
                 if isinstance(tensor, torch.Tensor) and tensor.is_floating_point()
                 and not bool(torch.isfinite(tensor).all())), None)


def predictions(model: nn.Module, loader: DataLoader, device: torch.device, attack: Attack | None = None,
                desc: str = "eval", show_progress: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(predicted, true) labels over ``loader``, on attacked inputs when ``attack`` is given.

    When ``loader`` reads one rank's shard (:class:`~harp_prune.distributed.ShardSampler`) in a
    distributed run, the shards are gathered, so every rank gets the whole split in its original order.
    The weights do not change during the pass, so a pruned model's masked weights are computed once for all
    batches, their attacks included (``fixed_weights``; an attack's own cache nests inside it).
    """
    predicted, truth = [], []
    with eval_mode(model), fixed_weights(model):
        for images, labels in progress(loader, desc, show_progress):
            images, labels = images.to(device), labels.to(device)
            if attack is not None:
                images = attack(model, images, labels)
            with torch.no_grad():
                predicted.append(model(images).argmax(1).cpu())
            truth.append(labels.cpu())
    predicted_all = torch.cat(predicted) if predicted else torch.empty(0, dtype=torch.long)
    truth_all = torch.cat(truth) if truth else torch.empty(0, dtype=torch.long)
    if isinstance(loader.sampler, distributed.ShardSampler):
        predicted_all = distributed.gather_shards(predicted_all, loader.sampler)
        truth_all = distributed.gather_shards(truth_all, loader.sampler)
    return predicted_all, truth_all


def accuracy(model: nn.Module, loader: DataLoader, device: torch.device, attack: Attack | None = None,
             desc: str = "eval", show_progress: bool = False) -> float:
    """Accuracy over ``loader`` (robust accuracy when ``attack`` is given)."""
    predicted, truth = predictions(model, loader, device, attack, desc, show_progress)
    return float((predicted == truth).double().mean()) if len(truth) else float("nan")
