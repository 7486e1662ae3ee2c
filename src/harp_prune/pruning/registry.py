"""The registry of pruning methods: ``@register_pruner`` on a ``Pruner`` subclass makes it a ``--method``.

A method's options are its ``Options`` dataclass (``harp_prune.registry.option`` fields); the config keys
``prune.<option>``, the ``--prune-<option>`` flags and their help come from it.
"""

from __future__ import annotations

from typing import Any

from harp_prune.pruning.base import Pruner
from harp_prune.registry import Registry, legacy_values

PRUNERS: Registry[type[Pruner]] = Registry("pruning method")
"""The pruning methods by name (``harp``, ``hydra``, ``lamp``, ...): ``PRUNERS.names()`` lists them,
``PRUNERS.get(name).factory`` is the ``Pruner`` class and ``.summary`` says what it does; ``build_pruner``
makes one."""
# class decorator: make a Pruner subclass available as the method ``cls.name`` with the options ``cls.Options``
register_pruner = PRUNERS.register_class


def pruner_class(method: str) -> type[Pruner]:
    return PRUNERS.get(method).factory


def build_pruner(method: str, sparsity: float, options: Any = None, **values: Any) -> Pruner:
    """Instantiate pruner ``method``; ``values`` are its options and the run's facts (``prunable``, ``seed``,
    ``input_shape``). An option it does not take (e.g. gamma0 for HYDRA) is an error naming both."""
    return pruner_class(method)(sparsity, options, **values)


# what a checkpoint records besides a method's options (``Pruner.describe``)
_RUN_FACTS = ("prunable", "seed", "input_shape")


def recorded_method(description: dict[str, Any]) -> str:
    """The method of a ``Pruner.describe()`` record. A 'harp' record with a γ0 was written before harp's budget
    trajectory existed, by what is now ``harp-paper`` (its masks are sigmoid rates): rebuilt as that."""
    method = description["method"]
    return "harp-paper" if method == "harp" and "gamma0" in description else method


def recorded_options(description: dict[str, Any]) -> dict[str, Any]:
    """The option values of a ``Pruner.describe()`` record. An option the record lacks was added after it was
    written; it had its legacy value then where the option declares one (``registry.option``), else its
    default (the method's options as ``build_pruner`` takes them, without method, sparsity and facts)."""
    values = {key: value for key, value in description.items()
              if key not in ("method", "sparsity", *_RUN_FACTS)}
    return {**legacy_values(pruner_class(recorded_method(description)).Options), **values}


def rebuild_pruner(description: dict[str, Any]) -> Pruner:
    """The pruner a checkpoint's ``Pruner.describe()`` record came from (the record holds its options)."""
    facts = {key: description[key] for key in _RUN_FACTS if key in description}
    return build_pruner(recorded_method(description), description["sparsity"], **recorded_options(description), **facts)
