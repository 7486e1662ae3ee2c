"""Guards against false robustness: balanced accuracy and an eps sweep that must behave like a real attack.

Gradient masking shows up as robust accuracy that does not fall with a larger budget, or stays well above
zero at a budget large enough to turn any input into any other; the sweep runs PGD at multiples of eps and
flags both (Carlini et al. 2019, "On evaluating adversarial robustness", sections 5.2-5.3).
"""

from __future__ import annotations

import itertools
from typing import Any

import torch
from torch import nn

from harp_prune.attacks import PGD
from harp_prune.evaluation.chunks import seeded

LARGE_EPS_MAX_ACC = 0.05  # robust accuracy at the largest multiple above this is flagged


def balanced_accuracy(hit: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean over the classes present of the per-class share of ``hit`` (accuracy that ignores class imbalance)."""
    classes = labels.unique()
    if len(classes) == 0:
        return float("nan")
    return float(torch.stack([hit[labels == c].double().mean() for c in classes]).mean())


def spread_subset(n: int, limit: int) -> torch.Tensor:
    """``limit`` indices spread evenly over ``range(n)`` (all of them when ``limit >= n``)."""
    if limit >= n:
        return torch.arange(n)
    return torch.linspace(0, n - 1, limit).round().long().unique()


def parse_multiples(text: str) -> list[float]:
    from harp_prune.errors import HarpError

    try:
        values = sorted({float(v) for v in text.split(",") if v.strip()})
    except ValueError:
        raise HarpError(
            f"evaluate.eps_sweep must be comma-separated eps multiples like 0.5,1,2,16, got '{text}'") from None
    if not values or values[0] <= 0:
        raise HarpError(f"evaluate.eps_sweep multiples must be positive, got '{text}'")
    return values


def sweep_hits(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, eps: float, step_size: float,
               norm: str, multiples: list[float], steps: int = 20, seed: int | None = None,
               key: int = 0) -> torch.Tensor:
    """Whether each example survives PGD-``steps`` at ``eps * m`` (step size scaled alike), one row per multiple m.

    One batch; with a ``seed`` its random starts come from the stream (seed, key), else the global stream.
    """
    rows = []
    with seeded(seed, key, device=images.device):
        for m in multiples:
            adversarial = PGD(eps * m, step_size * m, steps, norm=norm)(model, images, labels)
            with torch.no_grad():
                rows.append((model(adversarial).argmax(1) == labels).cpu())
    return torch.stack(rows) if rows else torch.zeros(0, len(labels), dtype=torch.bool)


def eps_sweep(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, eps: float, step_size: float,
              norm: str, multiples: list[float], steps: int = 20, batch_size: int = 500,
              seed: int | None = None) -> dict[str, Any]:
    """PGD-``steps`` robust accuracy at ``eps * m`` for each multiple m (step size scaled alike), and warnings.

    The batches of ``batch_size`` are the chunks of a distributed sweep (``suite.sanity_section``): with a
    ``seed``, batch i's random starts come from (seed, its first position), so the figures are the same.
    """
    hits = [sweep_hits(model, images[i:i + batch_size], labels[i:i + batch_size], eps, step_size, norm,
                       multiples, steps, seed, i) for i in range(0, len(images), batch_size)]
    return sweep_report(torch.cat(hits, dim=1) if hits else torch.zeros(len(multiples), 0, dtype=torch.bool),
                        eps, norm, multiples, steps)


def sweep_report(hits: torch.Tensor, eps: float, norm: str, multiples: list[float], steps: int) -> dict[str, Any]:
    """Robust accuracy per multiple from ``hits`` (multiples x examples) and the warnings.

    Robust accuracy must not increase with eps (beyond a two-example tolerance for the random starts) and
    must be near zero at the largest multiple.
    """
    examples = hits.shape[1]
    accs = [float(row.double().mean()) for row in hits]
    tolerance = 2.0 / max(examples, 1)
    pairs = list(zip(multiples, accs, strict=True))
    warnings = [
        f"robust accuracy rises from {100 * a:.2f}% at eps {eps * m:.4g} to {100 * b:.2f}% at eps {eps * n:.4g}: "
        "possible gradient masking, try more steps/restarts or AutoAttack"
        for (m, a), (n, b) in itertools.pairwise(pairs) if b > a + tolerance
    ]
    if accs and accs[-1] > LARGE_EPS_MAX_ACC:
        warnings.append(
            f"robust accuracy is still {100 * accs[-1]:.2f}% at eps {eps * multiples[-1]:.4g} "
            f"({multiples[-1]:g} x eps); a working attack should reach ~0 there: the evaluation may be unreliable")
    return {"examples": examples, "steps": steps, "norm": norm, "multiples": multiples,
            "eps": [eps * m for m in multiples], "robust_acc": accs, "warnings": warnings, "ok": not warnings}
