"""What the command's flags and help need from the library, as plain data cached on disk.

The config keys, the components' options (with each component's own default and meaning) and the export
formats are declared in modules that import torch, which takes seconds. ``describe`` reads them from the
registries and dataclasses (so an option added to a component appears in the help with nothing else to
edit); ``flag_table`` keeps the result in a cache file that is valid as long as the package's source files
are unchanged, so ``harp run --help`` answers without importing torch from the second call on.

The cache lives in ``$HARP_CACHE_DIR``, else ``$XDG_CACHE_HOME/harp-prune``, else ``~/.cache/harp-prune``;
one file per installed copy of the package (its path), so several checkouts do not evict each other.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import typing
from pathlib import Path
from typing import Any

from harp_prune.errors import HarpError
from harp_prune.files import write_atomic

PACKAGE = Path(__file__).resolve().parents[1]


def cache_dir() -> Path:
    if "HARP_CACHE_DIR" in os.environ:
        return Path(os.environ["HARP_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "harp-prune"


def cache_file() -> Path:
    where = hashlib.blake2b(str(PACKAGE).encode(), digest_size=6).hexdigest()
    return cache_dir() / f"flags-{where}.json"


def source_fingerprint() -> str:
    """A digest of every Python file of the package: any edit (a new option, a changed default) changes it."""
    digest = hashlib.blake2b(digest_size=16)
    for path in sorted(PACKAGE.rglob("*.py")):
        digest.update(str(path.relative_to(PACKAGE)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _type_name(tp: Any) -> str:
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    return getattr(args[0] if args else tp, "__name__", str(tp))


def _variant(declared: Any, owners: list[str]) -> dict[str, Any]:
    return {"owners": owners, "default": declared.default, "help": declared.metadata.get("help", "")}


def describe() -> dict[str, Any]:
    """The table, read from the registries (this imports torch).

    ``keys``: every config key with its type, choices, option bag and variants (one per distinct default and
    meaning among the components that take it, with those components); ``renamed``: old key -> new key;
    ``bags``: per option bag, the kind and names of its components, the keys that choose them and those a
    default config chooses; ``export_formats``: what ``harp export --format`` takes.
    """
    from harp_prune.config import OPTION_BAGS, RunConfig, config_keys
    from harp_prune.config.keys import chosen_components, renamed_keys
    from harp_prune.export import FORMATS
    from harp_prune.registry import choices_of, option_fields

    keys: dict[str, Any] = {}
    for name, key in config_keys().items():
        if key.bag is None:
            variants = [_variant(key.declared, [])]
        else:
            by_meaning: dict[tuple[str, str], dict[str, Any]] = {}
            option = name.rpartition(".")[2]
            for owner in key.owners:
                declared = option_fields(key.bag.registry.get(owner).options)[option]
                variant = by_meaning.setdefault((repr(declared.default), declared.metadata.get("help", "")),
                                                _variant(declared, []))
                variant["owners"].append(owner)
            variants = list(by_meaning.values())
        keys[name] = {"type": _type_name(key.type), "optional": type(None) in typing.get_args(key.type),
                      "choices": list(choices_of(key.declared)), "variants": variants,
                      "bag": None if key.bag is None else f"{key.bag.section}.{key.bag.field}"}
    bags = {f"{bag.section}.{bag.field}": {"kind": bag.registry.kind, "components": bag.registry.names(),
                                           "choosers": list(bag.choosers),
                                           "default": chosen_components(RunConfig(), bag)}
            for bag in OPTION_BAGS}
    return {"keys": keys, "renamed": renamed_keys(), "bags": bags, "export_formats": list(FORMATS)}


def flag_table() -> dict[str, Any]:
    """The table: from the cache when it was made from the same source files, else described now (and cached).

    In a process that has already loaded the registries (a Python program or test calling ``main``), it is
    described from them, so components registered at run time are included.
    """
    if "harp_prune.config" in sys.modules:
        return describe()
    path, fingerprint = cache_file(), source_fingerprint()
    try:
        cached = json.loads(path.read_text(encoding="utf-8"))
        if cached.get("fingerprint") == fingerprint:
            return cached["table"]
    except (OSError, ValueError, AttributeError):  # absent, unreadable or not a table: describe it again
        pass
    table = describe()
    with contextlib.suppress(OSError, HarpError):  # a cache that cannot be written costs the next help its speed
        write_atomic(path, json.dumps({"fingerprint": fingerprint, "table": table}))
    return table
