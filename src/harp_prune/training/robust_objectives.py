"""TRADES, MART and Free-AT, next to PGD-AT (docs/method.md, 'Training objectives').

TRADES and MART generate their attack with the model in eval mode from x + 0.001 N(0, 1) (not a uniform
start), with the configured PGD's steps, step size, norm and eps; their loss is computed in train mode.
The pure loss functions are separate so that they can be checked by hand.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from harp_prune.attacks import PGD, Attack, input_gradient
from harp_prune.attacks.base import fixed_weights
from harp_prune.errors import HarpError
from harp_prune.registry import option
from harp_prune.training.objectives import Objective, register_objective


def trades_loss(logits_nat: torch.Tensor, logits_adv: torch.Tensor, labels: torch.Tensor,
                beta: float = 6.0) -> torch.Tensor:
    """CE(f(x), y) + beta * sum_i KL(p_nat,i || p_adv,i) / batch (Zhang et al. 2019)."""
    kl = F.kl_div(F.log_softmax(logits_adv, 1), F.softmax(logits_nat, 1), reduction="sum") / len(labels)
    return F.cross_entropy(logits_nat, labels) + beta * kl


def mart_loss(logits_nat: torch.Tensor, logits_adv: torch.Tensor, labels: torch.Tensor,
              beta: float = 5.0) -> torch.Tensor:
    """BCE on the adversarial point plus beta * KL weighted by (1 - p_nat,y) (Wang et al. 2020).

    BCE = CE(f(x'), y) + NLL(log(1.0001 - p_adv), y'), y' the most likely wrong class under p_adv.
    """
    p_adv = F.softmax(logits_adv, 1)
    top2 = p_adv.argsort(1)[:, -2:]
    wrong = torch.where(top2[:, -1] == labels, top2[:, -2], top2[:, -1])
    bce = F.cross_entropy(logits_adv, labels) + F.nll_loss(torch.log(1.0001 - p_adv + 1e-12), wrong)
    p_nat = F.softmax(logits_nat, 1)
    kl = F.kl_div(torch.log(p_adv + 1e-12), p_nat, reduction="none").sum(1)
    true_nat = p_nat.gather(1, labels[:, None]).squeeze(1)
    return bce + beta * (kl * (1.0000001 - true_nat)).mean()


def _pgd_of(attack: Attack | None, objective: str) -> PGD:
    if not isinstance(attack, PGD):
        raise HarpError(f"objective '{objective}' needs a PGD attack (steps, step size), got {type(attack).__name__}")
    return attack


def gaussian_start_ascent(model: nn.Module, attack: PGD, images: torch.Tensor, target: torch.Tensor,
                          loss_fn: Callable[..., torch.Tensor]) -> torch.Tensor:
    """PGD steps of ``attack`` on ``loss_fn(logits, target)`` from x + 0.001 N(0, 1), the model in eval mode."""
    was_training = model.training
    model.eval()
    try:
        with fixed_weights(model):  # the masked weights W * M once for all steps, without a graph to S and r
            adversarial = (images + 0.001 * torch.randn_like(images)).clamp(0.0, 1.0)
            for _ in range(attack.steps):
                grad, _ = input_gradient(model, adversarial, target, loss_fn)
                adversarial = attack.project(adversarial + attack._ascend(grad), images)
    finally:
        model.train(was_training)
    return adversarial.detach()


def _kl_to(logits: torch.Tensor, p_nat: torch.Tensor, reduction: str = "sum") -> torch.Tensor:
    return F.kl_div(F.log_softmax(logits, 1), p_nat, reduction=reduction)


@dataclass(frozen=True)
class TradesOptions:
    beta: float = option(6.0, "weight of the KL term (robustness against accuracy; the paper's 6)")


@dataclass(frozen=True)
class MartOptions:
    beta: float = option(5.0, "weight of the misclassification-aware KL term (the paper's 5)")


@dataclass(frozen=True)
class FreeAtOptions:
    replays: int = option(4, "optimizer steps on each mini-batch (run epochs / replays epochs to keep the cost)")

    def __post_init__(self) -> None:
        if self.replays < 1:
            raise HarpError(f"free_at needs replays >= 1, got {self.replays}")


@register_objective
class TRADES(Objective):
    """TRADES: the attack maximises KL(p_nat || p_adv); loss CE(clean) + beta KL. Logged accuracy: clean."""

    name = "trades"
    Options = TradesOptions

    def __init__(self, attack: Attack | None = None, options: Any = None, **option_values: Any) -> None:
        super().__init__(attack, options, **option_values)
        self.pgd, self.beta = _pgd_of(attack, self.name), float(self.options.beta)

    def loss(self, model, images, labels):
        with torch.no_grad():
            was_training = model.training
            model.eval()
            p_nat = F.softmax(model(images), 1)
            model.train(was_training)
        adversarial = gaussian_start_ascent(model, self.pgd, images, p_nat, _kl_to)
        logits_nat = model(images)
        return trades_loss(logits_nat, model(adversarial), labels, self.beta), logits_nat


@register_objective
class MART(Objective):
    """MART: CE attack from a Gaussian start; misclassification-aware BCE + beta weighted KL."""

    name = "mart"
    Options = MartOptions

    def __init__(self, attack: Attack | None = None, options: Any = None, **option_values: Any) -> None:
        super().__init__(attack, options, **option_values)
        self.pgd, self.beta = _pgd_of(attack, self.name), float(self.options.beta)

    def loss(self, model, images, labels):
        adversarial = gaussian_start_ascent(model, self.pgd, images, labels, F.cross_entropy)
        logits_adv = model(adversarial)
        return mart_loss(model(images), logits_adv, labels, self.beta), logits_adv


@register_objective
class FreeAT(Objective):
    """Free adversarial training (Shafahi et al. 2019): each mini-batch is replayed ``replays`` times.

    One forward/backward per replay gives both the weight gradient (the optimizer steps after every replay)
    and the input gradient, which moves a persistent noise buffer by eps * sign(grad) (clamped to the
    eps-ball); the buffer carries over to the next mini-batch. The forward runs in train mode, as in the
    original. L-inf only. Usually run with epochs / replays epochs to keep the cost of natural training.
    """

    name = "free_at"
    Options = FreeAtOptions

    def __init__(self, attack: Attack | None = None, options: Any = None, **option_values: Any) -> None:
        super().__init__(attack, options, **option_values)
        if attack.norm != "linf":
            raise HarpError("free_at supports the linf threat model only; use pgd_at or trades for l2")
        self.replays, self.eps = int(self.options.replays), attack.eps
        self.noise: torch.Tensor | None = None
        self._input: torch.Tensor | None = None

    def loss(self, model, images, labels):
        if self.noise is None or self.noise.shape[1:] != images.shape[1:] or len(self.noise) < len(images):
            self.noise = torch.zeros_like(images)
        self.noise = self.noise.to(images.device)
        noise = self.noise[:len(images)]
        self._input = (images + noise).clamp(0.0, 1.0).detach().requires_grad_(True)
        logits = model(self._input)
        return F.cross_entropy(logits, labels), logits

    def after_backward(self) -> None:
        """Move the noise by eps * sign of the input gradient the last backward left on the input."""
        if self._input is None or self._input.grad is None:
            return
        n = len(self._input)
        step = self.eps * self._input.grad.sign()
        self.noise[:n] = (self.noise[:n] + step).clamp(-self.eps, self.eps)
        self._input = None
