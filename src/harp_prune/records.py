"""Comparing the settings recorded with a result (a checkpoint's or a cached cell's config) with today's.

A leaf: it works on the plain ``RunConfig.to_dict()`` records, so that training can refuse to resume a stage
under changed settings without importing the configuration layer above it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harp_prune.errors import HarpError


def _flat_settings(settings: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key in keys:
        value = settings.get(key)
        if isinstance(value, dict):
            flat.update({f"{key}.{name}": v for name, v in value.items()})
        else:
            flat[key] = value
    return flat


def changed_settings(old: dict[str, Any], new: dict[str, Any], keys: tuple[str, ...], ignore: tuple[str, ...] = (),
                     defaults: dict[str, Any] | None = None) -> dict[str, tuple[Any, Any]]:
    """``{key: (old, new)}`` for the settings under ``keys`` (top-level keys or whole sections) that differ
    between two ``RunConfig.to_dict()`` records; ``ignore`` lists dotted keys that may differ.

    A setting missing from ``old`` was added to harp-prune after it was written: it had its value in
    ``defaults`` (the record of a default configuration) then.
    """
    flat_old = {**_flat_settings(defaults or {}, keys), **_flat_settings(old, keys)}
    flat_new = _flat_settings(new, keys)
    return {key: (flat_old.get(key), flat_new.get(key)) for key in sorted(flat_old.keys() | flat_new.keys())
            if key not in ignore and flat_old.get(key) != flat_new.get(key)}


def refuse_changed_settings(recorded: dict[str, Any] | None, current: dict[str, Any], keys: tuple[str, ...],
                            ignore: tuple[str, ...], source: str | Path,
                            defaults: dict[str, Any] | None = None) -> None:
    """Raise when the checkpoint ``source`` was made under other values of the settings under ``keys``
    (``recorded``, its saved config) than ``current``'s: resuming would finish a run nobody asks for any more."""
    changes = changed_settings(recorded or {}, current, keys, ignore, defaults)
    if changes:
        made_with = "; ".join(f"{key}={old}, now {new}" for key, (old, new) in changes.items())
        raise HarpError(f"{source} was made with {made_with}; rerun without --resume in a new --out-dir, "
                        "or restore the setting")
