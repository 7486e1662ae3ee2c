"""Building a RunConfig: dataclass defaults < YAML file < Python values < command-line flags, then the data
set's declared defaults for what nobody set. Where each value came from is recorded in ``provenance``.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from harp_prune.config.checks import validate
from harp_prune.config.keys import (
    check_choice,
    chosen_components,
    config_keys,
    get,
    renamed_keys,
    section_of,
    sections,
    set_value,
    unknown_key_error,
)
from harp_prune.config.schema import RunConfig
from harp_prune.data import DATASETS
from harp_prune.errors import HarpError
from harp_prune.files import write_atomic
from harp_prune.registry import coerce


def flatten(mapping: Mapping[str, Any], source: str) -> dict[str, Any]:
    """``{"prune": {"sparsity": 0.9}}`` -> ``{"prune.sparsity": 0.9}`` (YAML and Python section values)."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        if key in sections():
            if not isinstance(value, Mapping):
                raise HarpError(f"'{key}' in {source} must be a mapping of settings, got {value!r}")
            flat.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            flat[key] = value
    return flat


def read_yaml(path: str | Path) -> dict[str, Any]:
    """The settings of a YAML config file, as dotted keys."""
    path = Path(path)
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise HarpError(f"cannot read config file {path}: {exc.strerror}; check the --config path") from exc
    except UnicodeDecodeError as exc:
        raise HarpError(f"config file {path} is not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset "
                        f"{exc.start}); save it as UTF-8") from exc
    except yaml.YAMLError as exc:
        raise HarpError(f"config file {path} is not valid YAML ({exc.__class__.__name__}); fix its syntax") from exc
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise HarpError(f"config file {path} must hold a mapping of settings at the top level")
    return flatten(loaded, str(path))


def set_key(config: RunConfig, key: str, value: Any, source: str) -> None:
    """Set ``key`` from ``source`` (a file, "Python", "command line"), coerced to its declared type; a former
    key of a renamed option sets its current key, with a deprecation note."""
    renamed = renamed_keys()
    if key in renamed:
        warnings.warn(f"config key '{key}' ({source}) is deprecated; use '{renamed[key]}'", FutureWarning,
                      stacklevel=2)
        key = renamed[key]
    known = config_keys()
    if key not in known:
        raise unknown_key_error(key, source)
    typed = coerce(key, value, known[key].type)
    check_choice(known[key], typed)
    set_value(config, key, typed)
    config.provenance[key] = source


def build_config(file_values: Mapping[str, Any] | None = None, cli_values: Mapping[str, Any] | None = None,
                 file_name: str = "config file", **sections_values: Mapping[str, Any] | Any) -> RunConfig:
    """A validated RunConfig: defaults, then the file's values, then Python values, then the command line's,
    then the data set's defaults for what nobody set.

    :param sections_values: Python values by section (``prune={"sparsity": 0.99}``) or top-level key
        (``model="resnet18_w16"``, ``out_dir="runs/x"``); the way to build a config in Python.
    :param file_values: a YAML file's settings as dotted keys (``read_yaml(path)``).
    :param cli_values: command-line values as dotted keys (``{"prune.sparsity": "0.9"}``, strings coerced).
    :param file_name: the file's name, for messages.
    :returns: the checked ``RunConfig``; a setting that cannot work is a ``HarpError`` naming it.

    Example::

        import harp_prune as hp
        config = hp.build_config(prune={"sparsity": 0.99, "gamma0": 0.05}, pretrain={"epochs": 5},
                                 attack={"eps": 8 / 255, "step_size": 2 / 255}, out_dir="runs/mine")
        config = hp.build_config(hp.read_yaml("my.yaml"), prune={"sparsity": 0.9})  # a file, then Python
    """
    config = RunConfig()
    config.provenance = {key: "default" for key in config_keys()}
    python_values = flatten(sections_values, "Python values")
    for values, source in ((file_values or {}, file_name), (python_values, "Python"),
                           (cli_values or {}, "command line")):
        for key, value in values.items():
            set_key(config, key, value, source)
    apply_dataset_defaults(config)
    validate(config)
    return config


def dataset_defaults(config: RunConfig) -> dict[str, Any]:
    """The chosen data set's declared defaults ({} for an unknown data set: validation names it)."""
    return dict(DATASETS.get(config.data.dataset).defaults) if config.data.dataset in DATASETS else {}


def apply_dataset_defaults(config: RunConfig) -> None:
    """Fill what nobody set from the data set's defaults; a component option only where the chosen component
    takes it (γ0 for HARP, not for HYDRA). Idempotent: call it again after changing the method."""
    dataset = config.data.dataset
    label = f"default for {dataset}"
    for key, source in list(config.provenance.items()):
        if source == label:  # re-derived below, for the components chosen now
            unset(config, key)
    known = config_keys()
    for key, value in dataset_defaults(config).items():
        if user_set(config, key):
            continue
        found = known[key]
        if found.bag is not None:
            _, name = section_of(config, key)
            if not any(name in found.bag.registry.get(c).takes() for c in chosen_components(config, found.bag)
                       if c in found.bag.registry):
                continue
        elif get(config, key) is not None:
            continue
        set_value(config, key, value)
        config.provenance[key] = label


def default_value(key: str, dataset: str) -> Any:
    """The value ``build_config`` gives ``key`` when nobody sets it (data-set defaults included; None for a
    component option nobody set: the component's own default applies)."""
    defaults = DATASETS.get(dataset).defaults if dataset in DATASETS else {}
    if key in defaults:
        return defaults[key]
    return get(RunConfig(), key)


def user_set(config: RunConfig, key: str) -> bool:
    """Whether the user chose ``key``'s value: in a file, flag or Python values (provenance), or by assigning
    it in Python afterwards."""
    source = config.provenance.get(key, "default")
    if not source.startswith("default"):  # nobody set it: "default" or "default for <data set>"
        return True
    if source.startswith("default for "):
        return get(config, key) != default_value(key, config.data.dataset)
    return get(config, key) != get(RunConfig(), key)


def unset(config: RunConfig, key: str) -> None:
    """Give ``key`` the value it has when nobody sets it (a component option: removed, its default applies)."""
    set_value(config, key, None if config_keys()[key].bag is not None else get(RunConfig(), key))
    config.provenance[key] = "default"


def save_config(config: RunConfig, path: str | Path) -> None:
    """Write the effective configuration, with where each non-default value came from as comments."""
    changed = {k: v for k, v in config.provenance.items() if v != "default"}
    header = ["# effective harp-prune configuration", *(f"# {k}: {v}" for k, v in sorted(changed.items()))]
    write_atomic(path, "\n".join(header) + "\n" + yaml.safe_dump(config.to_dict(), sort_keys=False))
