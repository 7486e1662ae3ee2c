"""S2AP (Piras, Zhao, Brau, Pintor, Wressnegger & Biggio, 2025): sharpness-aware minimisation in score space,
a plug-in for every method that learns scores (docs/s2ap.md).

In each pruning step the scores are first moved up the robust loss, S' = S + ε with
ε_l = ρ · ||S_l|| · g_l / ||g_l|| (g = dL/dS of the step's first backward pass, one direction per layer,
scaled to the layer's own score norm), the robust loss is computed again at S' (adversarial examples made
anew against the perturbed masks), and its gradients update the unperturbed scores. A mask whose robust loss
stays low when its scores are nudged towards worse masks is preferred to one on a sharp edge.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from harp_prune.errors import HarpError
from harp_prune.pruning.weight_mask import WeightMask
from harp_prune.registry import number, option


@dataclass(frozen=True)
class ScoreSharpnessOptions:
    """The S2AP option every score-learning method carries."""

    s2ap_rho: float = option(0.0, "S2AP: radius of the score perturbation, relative to each layer's score norm "
                                  "(0: off; each pruning step then costs two robust losses)")

    def __post_init__(self) -> None:
        if number("s2ap_rho", self.s2ap_rho) < 0:
            raise HarpError(f"s2ap_rho must be >= 0 (0 switches S2AP off), got {self.s2ap_rho}")


@torch.no_grad()
def perturb_scores(layers: list[WeightMask], rho: float) -> Callable[[], None] | None:
    """Move every layer's scores by ρ · ||S_l|| along its normalised gradient; returns the function that puts
    them back (None when no layer has a gradient yet)."""
    saved: list[tuple[WeightMask, torch.Tensor]] = []
    for layer in layers:
        grad = layer.scores.grad
        if grad is None:
            continue
        norm = grad.norm()
        if float(norm) == 0.0:
            continue
        saved.append((layer, layer.scores.detach().clone()))
        layer.scores.add_(grad * (rho * layer.scores.norm() / norm))
    if not saved:
        return None

    @torch.no_grad()
    def restore() -> None:
        for layer, scores in saved:
            layer.scores.copy_(scores)

    return restore
