"""Layer budgets: how many weights each layer keeps (the allocation half of a pruner; importance.py is the other).

A layer budget maps the masked layers (in registration order) and a global density to one keep-ratio per
layer. HARP starts from one (``init_strategy``); fixed-rate methods keep one as their final allocation
(``layer_budget``). lamp.py, erk.py and global_magnitude.py register theirs beside ``uniform``. Any budget
can be combined with any importance (the ``one-shot`` method).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from harp_prune.errors import HarpError
from harp_prune.pruning.weight_mask import WeightMask
from harp_prune.registry import Registry

Strategy = Callable[[list[WeightMask], float], list[float]]

STRATEGIES: Registry[Strategy] = Registry("layer budget")


def register_strategy(name: str, strategy: Strategy, summary: str = "") -> None:
    """Make ``name`` usable as ``init_strategy`` and as a fixed-rate layer budget."""
    STRATEGIES.register(name, strategy, summary=summary or (strategy.__doc__ or "").strip().splitlines()[0])


def uniform(layers: list[WeightMask], density: float) -> list[float]:
    """Every layer keeps the same fraction (the official default ``010_uni`` at density 0.1)."""
    return [density] * len(layers)


register_strategy("uniform", uniform)


def parse_strategy(text: str | Sequence[float], key: str = "layer budget") -> str | list[float]:
    """A layer budget name (checked against the registered ones) or one keep-ratio per layer, given as a list
    or as comma-separated text."""
    if isinstance(text, str) and "," not in text:
        if text not in STRATEGIES:  # the option's name in the message: several options take a layer budget
            raise HarpError(f"{key} '{text}' is not a layer budget; choose one of {', '.join(STRATEGIES.names())} "
                            "or give one keep-ratio per prunable layer, comma-separated")
        return text
    try:
        return [float(v) for v in (text.split(",") if isinstance(text, str) else text)]
    except (TypeError, ValueError):
        raise HarpError(f"{key} '{text}' is neither a layer budget name nor a list of numbers; give one of "
                        f"{', '.join(STRATEGIES.names())} or one keep-ratio per prunable layer, comma-separated"
                        ) from None


def check_keep_ratios(values: Sequence[float]) -> None:
    for value in values:
        if not 0.0 < value <= 1.0:
            raise HarpError(f"layer keep-ratios must be in (0, 1], got {value}")


def layer_densities(strategy: str | Sequence[float], layers: list[WeightMask], density: float) -> list[float]:
    """Resolve a layer budget name or an explicit per-layer list (or its comma-separated text) into one
    keep-ratio per layer."""
    parsed = parse_strategy(strategy)
    if isinstance(parsed, str):
        values = STRATEGIES.get(parsed).factory(layers, density)
    else:
        values = parsed
        if len(values) != len(layers):
            raise HarpError(
                f"the per-layer strategy has {len(values)} values but the model has {len(layers)} prunable "
                "layers; give exactly one keep-ratio per Conv2d/Linear layer in registration order"
            )
    check_keep_ratios(values)
    return values
