"""The small base class every attack derives from (torchattacks' pattern).

``Attack.__call__`` runs the model in eval mode (BatchNorm uses running statistics, dropout is off) and
restores whatever mode it found, even on error; subclasses only implement ``perturb``. The weights are
constant during an attack, so a pruned model's masked weights (parametrizations) are computed once for all
its iterations, without a graph to the scores: an attack needs gradients with respect to its input only.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.nn.utils import parametrize

from harp_prune.errors import HarpError


class Attack(ABC):
    """An evasion attack within an L-p ball of radius ``eps`` around inputs in [0, 1].

    :param eps: the radius of the threat model.
    :param norm: ``"linf"`` (or ``"l2"`` where a subclass supports it).
    """

    name: str = "attack"
    norms: tuple[str, ...] = ("linf",)

    def __init__(self, eps: float, norm: str = "linf") -> None:
        if not eps > 0:
            raise HarpError(f"attack eps must be > 0 (the radius of the threat model), got {eps}")
        if norm not in self.norms:
            raise HarpError(f"{self.name} supports the norms {', '.join(self.norms)}, not '{norm}'")
        self.eps = float(eps)
        self.norm = norm

    def __call__(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Adversarial versions of ``images`` (detached, in [0, 1], within the ball)."""
        with eval_mode(model), fixed_weights(model):
            return self.perturb(model, images.detach(), labels).detach()

    @abstractmethod
    def perturb(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The attack itself; the model is already in eval mode."""

    def project(self, adversarial: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """Project onto the eps-ball around ``images`` and the [0, 1] box."""
        if self.norm == "linf":
            delta = (adversarial - images).clamp(-self.eps, self.eps)
        else:
            delta = adversarial - images
            norms = delta.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *[1] * (delta.ndim - 1))
            delta = delta * (self.eps / norms).clamp(max=1.0)
        return (images + delta).clamp(0.0, 1.0)


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """``model`` in eval mode within the block; afterwards every submodule gets back the mode it had.

    ``model.train(was_training)`` would restore only the outer flag and set every submodule to it: a wrapper
    made around an eval-mode model (a new nn.Module is in train mode) would leave the wrapped model in train
    mode, its BatchNorm statistics updated by whatever ran next.
    """
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


@contextmanager
def fixed_weights(model: nn.Module) -> Iterator[None]:
    """Within the block, every parametrized tensor of ``model`` (a pruning mask's W * M) is computed once,
    now and without autograd history, and reused by every read (``torch.nn.utils.parametrize.cached``).

    A parametrization with ``reuse_mask = False`` (benchmarks/prune_step.py's emulation of the official
    code, which re-sorts the scores on every forward pass) turns the caching off, so it keeps doing so.
    """
    emulate_resort = any(not getattr(p, "reuse_mask", True) for m in model.modules()
                         if parametrize.is_parametrized(m) for ps in m.parametrizations.values() for p in ps)
    if emulate_resort:
        yield
        return
    with parametrize.cached():
        with torch.no_grad():
            for module in model.modules():
                if parametrize.is_parametrized(module):
                    for name in module.parametrizations:  # type: ignore[union-attr]
                        getattr(module, name)  # fills the cache
        yield


def input_gradient(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                   loss_fn=nn.functional.cross_entropy) -> tuple[torch.Tensor, torch.Tensor]:
    """(d loss / d images, logits) for the summed loss, without touching any parameter's ``.grad``."""
    images = images.clone().requires_grad_(True)
    logits = model(images)
    loss = loss_fn(logits, labels, reduction="sum")
    (grad,) = torch.autograd.grad(loss, images)
    return grad, logits.detach()
