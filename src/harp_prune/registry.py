"""One registry for every kind of component: pruners, layer budgets, importances, objectives, attacks, models and
data sets.

A component is a name, a factory and its options, declared once as a dataclass whose fields carry their type,
default and help (``option``). Everything else is derived from that declaration: the config keys and command-line
flags (``harp_prune.config``, ``harp_prune.cli``), their help text, the coercion of strings from YAML or flags, and
the error for an option the chosen component does not take, which names both.

Example::

    from dataclasses import dataclass
    from harp_prune.registry import Registry, option

    SHAPES = Registry("shape")

    @dataclass(frozen=True)
    class SquareOptions:
        side: float = option(1.0, "length of a side")

    SHAPES.register("square", lambda options: options.side ** 2, options=SquareOptions, summary="a square")
    SHAPES.create("square", side=2.0)  # 4.0
    SHAPES.create("square", radius=2.0)  # HarpError: shape 'square' does not take option 'radius'; it takes: side
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import pkgutil
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from harp_prune.errors import HarpError

T = TypeVar("T")
C = TypeVar("C", bound=type)


@dataclass(frozen=True)
class NoOptions:
    """The options of a component that takes none."""


_NO_LEGACY = object()


def option(default: Any, help: str, choices: tuple[str, ...] | Registry | None = None, *,
           legacy: Any = _NO_LEGACY, renamed_from: tuple[str, ...] = ()) -> Any:
    """A dataclass field of a component's options: its default, what it means and, for text, its choices
    (a tuple, or a registry whose names are the choices).

    :param legacy: for an option added with a default that changes what the component did before, the value
        that reproduces the old behaviour: a record written before the option existed (a checkpoint, a cached
        comparison cell) was made with it, not with the default (``recorded_options``).
    :param renamed_from: the option's former names: records and configs that use them still load (configs
        with a deprecation note, ``harp_prune.config``).
    """
    return field(default=default, metadata={"help": help, "choices": choices, "legacy": legacy,
                                            "renamed_from": renamed_from})


def legacy_values(options: type) -> dict[str, Any]:
    """The options of ``options`` that records written before them imply a non-default value for."""
    return {item.name: item.metadata["legacy"] for item in dataclasses.fields(options)
            if item.metadata.get("legacy", _NO_LEGACY) is not _NO_LEGACY}


def flag_name(key: str) -> str:
    """The command-line flag of a config key: ``data.batch_size`` is ``--data-batch-size``."""
    return "--" + key.replace(".", "-").replace("_", "-")


def renamed_options(options: type) -> dict[str, str]:
    """The former names of the options of ``options``, each with its current name."""
    return {old: item.name for item in dataclasses.fields(options) for old in item.metadata.get("renamed_from", ())}


def choices_of(item: dataclasses.Field) -> tuple[str, ...]:
    """The allowed values of an option's text, () when any value of its type is allowed."""
    choices = item.metadata.get("choices")
    return tuple(choices.names() if isinstance(choices, Registry) else choices or ())


def check_choice(item: dataclasses.Field, value: Any, name: str) -> None:
    """Refuse a value outside the option's choices; a registry names its kind ("unknown data set 'x'")."""
    choices = item.metadata.get("choices")
    if value is None or not choices:
        return
    if isinstance(choices, Registry):
        choices.get(value)
    elif value not in choices:
        raise HarpError(f"{name} must be one of {', '.join(choices)}, got {value!r}")


def coerce(key: str, value: Any, tp: Any) -> Any:
    """Convert ``value`` (from YAML, a flag's string or Python) to type ``tp``, or explain what is wrong."""
    args = typing.get_args(tp)
    optional = type(None) in args
    if optional:
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
            return None
        tp = next(a for a in args if a is not type(None))
    try:
        if tp is bool:
            if isinstance(value, str):
                if value.lower() in ("1", "true", "yes", "on"):
                    return True
                if value.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            return bool(value)
        if tp is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            return int(value)
        if tp is float:
            if isinstance(value, bool):
                raise ValueError(value)
            return float(value)
        if tp is str:
            if isinstance(value, list | tuple):  # a per-layer list given in YAML or Python
                return ",".join(str(v) for v in value)
            return str(value)
    except (TypeError, ValueError):
        pass
    else:
        raise HarpError(f"config key '{key}' has an unsupported type {tp}")
    name = getattr(tp, "__name__", str(tp))
    raise HarpError(f"config key '{key}' must be {name}{' or none' if optional else ''}, got {value!r}")


def option_fields(options: type) -> dict[str, dataclasses.Field]:
    """The fields of an options dataclass by name, with their resolved types in ``Field.type``."""
    hints = typing.get_type_hints(options)
    out = {}
    for item in dataclasses.fields(options):
        item.type = hints[item.name]
        out[item.name] = item
    return out


def build_options(options: type, values: Mapping[str, Any] | None, owner: str, where: str = "") -> Any:
    """An instance of the options dataclass ``options`` from ``values``: each coerced to its declared type and
    checked against its choices; a key ``options`` does not declare is an error naming ``owner`` (e.g.
    "pruning method 'hydra'") and what it takes."""
    declared = option_fields(options)
    renamed = renamed_options(options)
    given = {renamed.get(key, key): value for key, value in (values or {}).items()}
    for key in given:
        if key not in declared:
            raise HarpError(f"{owner} does not take option '{key}'{f' (set in {where})' if where else ''}; "
                            f"it takes: {', '.join(declared) or 'no options'}")
    typed = {key: coerce(key, value, declared[key].type) for key, value in given.items()}
    for key, value in typed.items():
        check_choice(declared[key], value, f"option '{key}' of {owner}")
    return options(**typed)


def resolve_options(options_type: type, options: Any, values: Mapping[str, Any], owner: str) -> Any:
    """What a component's constructor does with ``options`` (an instance of its ``options_type``) or option
    ``values`` given as keyword arguments: exactly one of the two, checked against the declaration."""
    if options is None:
        return build_options(options_type, values, owner)
    if values:
        raise HarpError(f"give the options of {owner} either as {options_type.__name__} or as keyword arguments")
    if not isinstance(options, options_type):
        raise HarpError(f"{owner} takes {options_type.__name__}, got {type(options).__name__}")
    return options


def number(name: str, value: object) -> float:
    """``value`` as a finite float, or a HarpError naming the option (a string such as "abc" is not a number)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise HarpError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise HarpError(f"{name} must be a finite number, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Component(Generic[T]):
    """A registered component.

    :param defaults: settings of other parts of a run this component implies unless the user sets them, by
        dotted config key (a data set's attack eps, for example).
    """

    name: str
    factory: Callable[..., T]
    options: type = NoOptions
    summary: str = ""
    defaults: Mapping[str, Any] = field(default_factory=dict)

    def takes(self) -> tuple[str, ...]:
        return tuple(option_fields(self.options))


class Registry(Generic[T]):
    """Components of one kind by name; ``kind`` names them in messages ("pruning method", "attack", ...)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._components: dict[str, Component[T]] = {}
        self.version = 0  # counts changes, so that what is derived from the registry can be cached

    def register(self, name: str, factory: Callable[..., T], *, options: type = NoOptions, summary: str = "",
                 defaults: Mapping[str, Any] | None = None) -> Component[T]:
        """Add (or replace) the component ``name``; ``options`` is its options dataclass."""
        if not dataclasses.is_dataclass(options):
            raise HarpError(f"the options of {self.kind} '{name}' must be a dataclass, got {options!r}")
        component = Component(name, factory, options, summary, dict(defaults or {}))
        self._components[name] = component
        self.version += 1
        return component

    def register_class(self, cls: C) -> C:
        """Class decorator: register ``cls`` under ``cls.name`` with the options ``cls.Options`` and the first
        line of its docstring as summary."""
        self.register(cls.name, cls, options=getattr(cls, "Options", NoOptions),
                      summary=(cls.__doc__ or "").strip().splitlines()[0])
        return cls

    def remove(self, name: str) -> None:
        """Unregister ``name`` (a no-op when it is not registered)."""
        self._components.pop(name, None)
        self.version += 1

    def __contains__(self, name: object) -> bool:
        return name in self._components

    def __iter__(self) -> Iterator[str]:
        """The registered names, in registration order (as a dict's keys)."""
        return iter(self._components)

    def components(self) -> list[Component[T]]:
        return list(self._components.values())

    def names(self) -> list[str]:
        return sorted(self._components)

    def get(self, name: str) -> Component[T]:
        try:
            return self._components[name]
        except KeyError:
            raise HarpError(f"unknown {self.kind} '{name}'; choose one of {', '.join(self.names())}") from None

    def options(self, name: str, values: Mapping[str, Any] | None = None, *, where: str = "") -> Any:
        """The options of ``name`` from ``values`` (coerced to the declared types; the rest at their defaults).
        An option ``name`` does not take is an error that names both; ``where`` says where it was set."""
        return build_options(self.get(name).options, values, f"{self.kind} '{name}'", where)

    def create(self, name: str, *args: Any, options: Any = None, **values: Any) -> T:
        """Call ``name``'s factory with ``args`` and its options (an options instance, or option values)."""
        component = self.get(name)
        return component.factory(*args, resolve_options(component.options, options, values, f"{self.kind} '{name}'"))

    def option_owners(self) -> dict[str, list[Component[T]]]:
        """Every option name of the registered components, with the components that take it."""
        owners: dict[str, list[Component[T]]] = {}
        for component in self.components():
            for key in component.takes():
                owners.setdefault(key, []).append(component)
        return owners


def import_submodules(package: str, path: Iterable[str]) -> None:
    """Import every module of ``package`` (its ``__path__``), so that a component registers itself by being a
    file in the package: adding one is adding one file."""
    for module in pkgutil.iter_modules(path):
        importlib.import_module(f"{package}.{module.name}")
