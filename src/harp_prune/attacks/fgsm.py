"""Fast gradient sign method (Goodfellow et al. 2015): one step of size eps, no random start."""

from __future__ import annotations

import torch
from torch import nn

from harp_prune.attacks.base import Attack, input_gradient


class FGSM(Attack):
    """x' = clip(x + eps * sign(grad CE), 0, 1)."""

    name = "fgsm"

    def perturb(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        grad, _ = input_gradient(model, images, labels)
        return self.project(images + self.eps * grad.sign(), images)
