"""Initial per-layer keep-ratio strategies (the official code's ``strategies.json``, computed instead).

A strategy maps the masked layers (in registration order) and a density to one keep-ratio per layer.
HARP starts from one of them; fixed-rate baselines use one as their final layer budget.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from harp_prune.errors import HarpError
from harp_prune.pruning.masked import WeightMask

Strategy = Callable[[list[WeightMask], float], list[float]]


def uniform(layers: list[WeightMask], density: float) -> list[float]:
    """Every layer keeps the same fraction (the official default ``010_uni`` at density 0.1)."""
    return [density] * len(layers)


STRATEGIES: dict[str, Strategy] = {"uniform": uniform}


def register_strategy(name: str, strategy: Strategy) -> None:
    """Make ``name`` usable as ``init_strategy`` and as a fixed-rate layer budget."""
    STRATEGIES[name] = strategy


def layer_densities(strategy: str | Sequence[float], layers: list[WeightMask], density: float) -> list[float]:
    """Resolve a strategy name or an explicit per-layer list into one keep-ratio per layer."""
    if isinstance(strategy, str):
        try:
            values = STRATEGIES[strategy](layers, density)
        except KeyError:
            raise HarpError(
                f"unknown layer strategy '{strategy}'; choose one of {', '.join(sorted(STRATEGIES))} "
                "or give one keep-ratio per prunable layer"
            ) from None
    else:
        values = [float(v) for v in strategy]
        if len(values) != len(layers):
            raise HarpError(
                f"the per-layer strategy has {len(values)} values but the model has {len(layers)} prunable "
                "layers; give exactly one keep-ratio per Conv2d/Linear layer in registration order"
            )
    for value in values:
        if not 0.0 < value <= 1.0:
            raise HarpError(f"layer keep-ratios must be in (0, 1], got {value}")
    return values
