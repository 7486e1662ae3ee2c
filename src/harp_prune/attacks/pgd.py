"""Projected gradient descent (Madry et al. 2018) with random start and restarts."""

from __future__ import annotations

import torch
from torch import nn

from harp_prune.attacks.base import Attack, input_gradient
from harp_prune.errors import HarpError


class PGD(Attack):
    """PGD-k: ``steps`` signed-gradient (L-inf) or normalised-gradient (L2) ascent steps on the CE loss.

    :param eps: radius of the ball; :param step_size: size of each step (default eps / 4);
    :param steps: number of steps; :param random_start: start from a uniform point in the ball;
    :param restarts: independent runs; each example keeps the first adversarial point that fools the model.
    """

    name = "pgd"
    norms = ("linf", "l2")

    def __init__(self, eps: float, step_size: float | None = None, steps: int = 10, random_start: bool = True,
                 restarts: int = 1, norm: str = "linf", loss_fn=nn.functional.cross_entropy) -> None:
        super().__init__(eps, norm)
        if step_size is not None and not step_size > 0:
            raise HarpError(f"{self.name} step_size must be > 0 (e.g. eps / 4), got {step_size}")
        if steps < 1 or restarts < 1:
            raise HarpError(f"{self.name} needs steps >= 1 and restarts >= 1, got steps={steps}, restarts={restarts}")
        self.step_size = float(step_size) if step_size is not None else self.eps / 4
        self.steps = int(steps)
        self.random_start = random_start
        self.restarts = int(restarts)
        self.loss_fn = loss_fn

    def _start(self, images: torch.Tensor) -> torch.Tensor:
        if not self.random_start:
            return images.clone()
        if self.norm == "linf":
            noise = torch.empty_like(images).uniform_(-self.eps, self.eps)
        else:
            noise = torch.randn_like(images)
            radius = torch.rand(len(images), device=images.device).view(-1, *[1] * (images.ndim - 1))
            noise = noise / noise.flatten(1).norm(dim=1).clamp_min(1e-12).view_as(radius) * radius * self.eps
        return (images + noise).clamp(0.0, 1.0)

    def _ascend(self, grad: torch.Tensor) -> torch.Tensor:
        if self.norm == "linf":
            return self.step_size * grad.sign()
        norms = grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *[1] * (grad.ndim - 1))
        return self.step_size * grad / norms

    def _run(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        adversarial = self._start(images)
        for _ in range(self.steps):
            grad, _ = input_gradient(model, adversarial, labels, self.loss_fn)
            adversarial = self.project(adversarial + self._ascend(grad), images)
        return adversarial

    def perturb(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        best = self._run(model, images, labels)
        for _ in range(self.restarts - 1):
            with torch.no_grad():
                still_correct = model(best).argmax(1) == labels
            if not still_correct.any():
                break
            candidate = self._run(model, images[still_correct], labels[still_correct])
            best[still_correct] = candidate
        return best
