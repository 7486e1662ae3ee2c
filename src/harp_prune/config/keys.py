"""Every settable config key ("seed", "prune.sparsity", "prune.gamma0", ...), its type, help and where it lives.

A key is either a dataclass field of a section (``schema.py``) or an option of a component, declared by the
component (``harp_prune.registry``) and held in its section's options dict: ``OPTION_BAGS`` says which
registry fills which dict, and which config key chooses the component.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
from dataclasses import dataclass
from typing import Any

from harp_prune.attacks import ATTACKS
from harp_prune.attacks.registry import split_attack_name
from harp_prune.config.schema import RunConfig
from harp_prune.errors import HarpError
from harp_prune.pruning import PRUNERS
from harp_prune.registry import Registry, option_fields, renamed_options
from harp_prune.registry import check_choice as check_option_choice
from harp_prune.training import OBJECTIVES


@dataclass(frozen=True)
class OptionBag:
    """The options dict ``field`` of ``section`` holds the options of ``registry``'s components; ``choosers``
    are the keys that name those components, the first one set deciding (``harp run --method M --help``
    lists M's options: ``harp_prune.cli``)."""

    section: str
    field: str
    registry: Registry
    choosers: tuple[str, ...]


OPTION_BAGS = (
    OptionBag("pretrain", "objective_options", OBJECTIVES, ("pretrain.objective",)),
    OptionBag("prune", "objective_options", OBJECTIVES, ("prune.objective", "pretrain.objective")),
    # harp compare prunes with each of compare.methods
    OptionBag("prune", "method_options", PRUNERS, ("prune.method", "compare.methods")),
    OptionBag("finetune", "objective_options", OBJECTIVES, ("finetune.objective", "pretrain.objective")),
    OptionBag("evaluate", "attack_options", ATTACKS, ("evaluate.attacks",)),
)
BAG_FIELDS = {(bag.section, bag.field) for bag in OPTION_BAGS}
METHOD_BAG = next(bag for bag in OPTION_BAGS if bag.field == "method_options")


@dataclass(frozen=True)
class Key:
    """One settable key: its declared field (type, default, help, choices) and, for a component option, its bag
    and the components that take it."""

    name: str
    declared: dataclasses.Field
    bag: OptionBag | None = None
    owners: tuple[str, ...] = ()

    @property
    def type(self) -> Any:
        return self.declared.type


def sections() -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(RunConfig) if dataclasses.is_dataclass(f.default_factory))


@functools.cache
def _static_keys() -> dict[str, Key]:
    keys: dict[str, Key] = {}
    top = option_fields(RunConfig)
    for name, declared in top.items():
        if name == "provenance":
            continue
        if name in sections():
            for sub, item in option_fields(declared.type).items():
                if (name, sub) not in BAG_FIELDS:
                    keys[f"{name}.{sub}"] = Key(f"{name}.{sub}", item)
        else:
            keys[name] = Key(name, declared)
    return keys


def config_keys() -> dict[str, Key]:
    """Every settable key, the components' options included (components registered later are included too)."""
    return _keys_for(tuple(bag.registry.version for bag in OPTION_BAGS))


@functools.lru_cache(maxsize=4)
def _keys_for(versions: tuple[int, ...]) -> dict[str, Key]:
    """``config_keys`` for the registries' current ``versions`` (recomputed only when a component changes)."""
    keys = dict(_static_keys())
    for bag in OPTION_BAGS:
        for option_name, owners in bag.registry.option_owners().items():
            name = f"{bag.section}.{option_name}"
            if name in keys and keys[name].bag is not bag:
                raise HarpError(f"option '{option_name}' of {bag.registry.kind} '{owners[0].name}' clashes with the "
                                f"config key {name}; rename the option")
            declared = option_fields(owners[0].options)[option_name]
            for owner in owners[1:]:
                other = option_fields(owner.options)[option_name]
                if other.type != declared.type:
                    raise HarpError(f"option '{option_name}' has type {declared.type} for {owners[0].name} but "
                                    f"{other.type} for {owner.name}; one option name must have one type")
            keys[name] = Key(name, declared, bag, tuple(o.name for o in owners))
    return keys


def renamed_keys() -> dict[str, str]:
    """The former config keys of renamed component options, each with its current key (``prune.frontier``:
    ``prune.boundary_width``)."""
    return {f"{bag.section}.{old}": f"{bag.section}.{new}" for bag in OPTION_BAGS
            for component in bag.registry.components() for old, new in renamed_options(component.options).items()}


def section_of(config: RunConfig, key: str) -> tuple[Any, str]:
    section, _, name = key.rpartition(".")
    return (getattr(config, section) if section else config), name


def get(config: RunConfig, key: str) -> Any:
    """The value of ``key``; for a component option, the value set (None when unset: the component's default)."""
    found = config_keys().get(key)
    target, name = section_of(config, key)
    if found is not None and found.bag is not None:
        return getattr(target, found.bag.field).get(name)
    return getattr(target, name)


def set_value(config: RunConfig, key: str, value: Any) -> None:
    """Set ``key`` to ``value`` (already coerced); None removes a component option (its default applies)."""
    found = config_keys()[key]
    target, name = section_of(config, key)
    if found.bag is None:
        setattr(target, name, value)
    elif value is None:
        getattr(target, found.bag.field).pop(name, None)
    else:
        getattr(target, found.bag.field)[name] = value


def check_choice(key: Key, value: Any) -> None:
    check_option_choice(key.declared, value, key.name)


def unknown_key_error(key: str, source: str) -> HarpError:
    known = config_keys()
    close = [k for k in known if k.endswith(f".{key}") or k.split(".")[-1] == key.split(".")[-1]]
    close += [k for k in difflib.get_close_matches(key, list(known), n=3) if k not in close]
    hint = f" (did you mean {', '.join(close[:3])}?)" if close else ""
    return HarpError(f"unknown config key '{key}' in {source}{hint}")


def chosen_components(config: RunConfig, bag: OptionBag) -> list[str]:
    """The components of ``bag`` the config chooses: a stage's objective (prune and finetune fall back to
    pretrain's), the pruning method, or the evaluation attacks (the default PGD when none are listed)."""
    if bag.registry is OBJECTIVES:
        return [getattr(config, bag.section).objective or config.pretrain.objective]
    if bag.registry is PRUNERS:
        return [config.prune.method]
    names = [n.strip() for n in (config.evaluate.attacks or "pgd").split(",") if n.strip()]
    return [split_attack_name(name)[0] for name in names]
