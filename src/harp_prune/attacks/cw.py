"""PGD on the Carlini-Wagner margin loss (the "CW-inf" attack of HYDRA/HARP's test suite)."""

from __future__ import annotations

import torch
from torch import nn

from harp_prune.attacks.pgd import PGD


def cw_margin_loss(logits: torch.Tensor, labels: torch.Tensor, kappa: float = 50.0,
                   reduction: str = "sum") -> torch.Tensor:
    """-clamp(z_y - max_{j != y} z_j + kappa, min=0): ascending it pushes the true logit below the runner-up.

    The margin is clamped at -kappa, so points already misclassified by more than kappa stop contributing.
    """
    true = logits.gather(1, labels[:, None]).squeeze(1)
    others = logits.masked_fill(nn.functional.one_hot(labels, logits.shape[1]).bool(), float("-inf"))
    loss = -(true - others.max(1).values + kappa).clamp(min=0)
    return loss.sum() if reduction == "sum" else loss.mean() if reduction == "mean" else loss


class CWPGD(PGD):
    """PGD-k (random start, restarts, L-inf or L2) ascending the CW margin loss with confidence ``kappa``."""

    name = "cw"

    def __init__(self, eps: float, step_size: float | None = None, steps: int = 20, random_start: bool = True,
                 restarts: int = 1, norm: str = "linf", kappa: float = 50.0) -> None:
        self.kappa = float(kappa)
        super().__init__(eps, step_size, steps, random_start, restarts, norm,
                         loss_fn=lambda logits, labels, reduction="sum": cw_margin_loss(
                             logits, labels, self.kappa, reduction))
