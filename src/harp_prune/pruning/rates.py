"""The keep-ratio of a layer from its rate r, and the inverse (docs/method.md, 'Keep-ratio and mask').

Two parametrisations: the paper's a = a_min + (a_max - a_min) * sigmoid(r) (``harp-paper``, ``harp-channel``,
``frontier``) and harp's log keep-ratio a = clamp(exp(r), a_min, a_max), whose slope da/dr = a never vanishes.
"""

from __future__ import annotations

import math

import torch

from harp_prune.errors import HarpError


def _as_fraction(value: object, what: str) -> float:
    """``value`` as a float, or a HarpError naming ``what`` (not a TypeError) for a string, None, a list..."""
    if isinstance(value, bool):  # a bool is an int to Python, never a meant fraction
        raise HarpError(f"{what} must be a number, got {value!r}")
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise HarpError(f"{what} must be a number, got {value!r}") from None


def check_density(density: float, what: str = "target density") -> float:
    """Validate a kept fraction in (0, 1]; sparsity 0.99 is density 0.01."""
    density = _as_fraction(density, what)
    if not 0.0 < density <= 1.0:
        raise HarpError(f"{what} must be in (0, 1] (sparsity in [0, 1)), got {density}")
    return density


def check_sparsity(sparsity: float, what: str = "sparsity") -> float:
    """Validate a removed fraction in [0, 1) (0.99 keeps 1% of the weights); returns it as a float."""
    sparsity = _as_fraction(sparsity, what)
    if not 0.0 <= sparsity < 1.0:
        raise HarpError(f"{what} must be in [0, 1) (0.99 keeps 1% of the weights), got {sparsity}")
    return sparsity


def keep_ratio(rate: torch.Tensor, min_keep: float, max_keep: float = 1.0) -> torch.Tensor:
    """a(r) = a_min + (a_max - a_min) * sigmoid(r): always in (a_min, a_max), differentiable.

    a_max is 1 unless the user bounds the layers' keep-ratios (``prune.max_layer_density``); squashing the
    sigmoid into [a_min, a_max] keeps the STE's gradient exact, where a hard clamp would cut it off.
    """
    return min_keep + (max_keep - min_keep) * torch.sigmoid(rate)


def rate_for_keep_ratio(density: float, min_keep: float, max_keep: float = 1.0) -> float:
    """The logit r with keep_ratio(r) == density.

    The official code clips u to [-0.99, 0.99] before the logit; a negative u has no logit, so we clip to
    [1e-6, 1 - 1e-6] instead (docs/method.md, 'Where the official code differs'). Densities at or below a_min
    land just above it, those at or above a_max just below it.
    """
    u = (density - min_keep) / (max_keep - min_keep)
    u = min(max(u, 1e-6), 1.0 - 1e-6)
    return math.log(u / (1.0 - u))


def log_keep_ratio(rate: torch.Tensor, min_keep: float, max_keep: float = 1.0) -> torch.Tensor:
    """a(r) = clamp(exp(r), a_min, a_max): the log-keep-ratio parametrisation of ``harp``.

    The pruner keeps r inside [log a_min, log a_max] (it steps the rates itself), so the clamp only guards
    against a rate written from outside; inside the bounds a step of r changes a by the same factor at any a.
    """
    return torch.exp(rate).clamp(min_keep, max_keep)


def rate_for_log_keep_ratio(density: float, min_keep: float, max_keep: float = 1.0) -> float:
    """The rate r with log_keep_ratio(r) == density (clamped into the bounds)."""
    return math.log(min(max(density, min_keep, 1e-30), max_keep))


def kept_count(density: float, numel: int) -> int:
    """Integer number of weights a layer keeps at keep-ratio ``density``: N - floor((1 - a) * N) (>= 1)."""
    return numel - math.floor((1.0 - density) * numel)
