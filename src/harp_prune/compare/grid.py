"""The comparison grid: which cells (method × sparsity × seed, with γ0-sweep and method:budget variants) run,
the config of each, and the check that a cached result was made under the same settings."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from harp_prune.config import METHOD_BAG, RunConfig, apply_dataset_defaults, check_taken, unset, user_set
from harp_prune.errors import HarpError
from harp_prune.progress import log
from harp_prune.pruning import PRUNERS, STRATEGIES
from harp_prune.records import changed_settings

# settings a cached result must share with the current run to be reused (out dirs, sources, progress and
# the compare section itself may differ)
CELL_KEYS = ("model", "seed", "select_on", "data", "attack", "pretrain", "prune", "finetune", "evaluate")
PRETRAIN_KEYS = ("model", "seed", "select_on", "data", "attack", "pretrain")
# where from / how fast, not what is computed
CACHE_NEUTRAL_KEYS = ("prune.source", "finetune.source", "data.workers", "data.eval_batch_size")
# the option that ':<budget>' in compare.methods sets: a fixed-rate method's layer budget, or where a learning
# method's rates start
BUDGET_OPTIONS = ("layer_budget", "init_strategy")


@dataclass(frozen=True)
class Cell:
    """One entry of the comparison grid: a method at a sparsity and seed, with the options that make it a
    variant (``hydra:lamp`` sets HYDRA's layer_budget, ``harp:lamp`` HARP's init_strategy, the γ0 sweep γ0)."""

    method: str
    sparsity: float
    seed: int
    options: tuple[tuple[str, Any], ...] = ()

    @property
    def budget(self) -> str | None:
        return next((value for key, value in self.options if key in BUDGET_OPTIONS), None)

    @property
    def gamma0(self) -> float | None:
        return dict(self.options).get("gamma0")

    @property
    def label(self) -> str:
        label = self.method if self.budget is None else f"{self.method}:{self.budget}"
        return label if self.gamma0 is None else f"{label}(g0={self.gamma0:g})"

    def path(self, root: Path) -> Path:
        name = self.method if self.budget is None else f"{self.method}-{self.budget}"
        name = name if self.gamma0 is None else f"{name}-g0-{self.gamma0:g}"
        return root / "cells" / name / f"sparsity-{self.sparsity:g}" / f"seed-{self.seed}"


def parse_list(text: str, cast: type, key: str) -> list:
    """Split a comma-separated config value; explains the expected format on failure."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    try:
        return [cast(item) for item in items]
    except ValueError:
        raise HarpError(f"{key} must be comma-separated {cast.__name__} values, got '{text}'") from None


def _variant(spec: str) -> tuple[str, tuple[tuple[str, Any], ...]]:
    """``hydra:lamp`` -> ("hydra", (("layer_budget", "lamp"),)): the budget option the method takes."""
    method, _, budget = spec.partition(":")
    PRUNERS.get(method)  # an unknown method is named with the known ones
    if not budget:
        return method, ()
    takes = [key for key in BUDGET_OPTIONS if key in PRUNERS.get(method).takes()]
    if budget not in STRATEGIES or not takes:
        raise HarpError(f"'{spec}' in compare.methods: only methods with a layer budget (hydra, one-shot) or an "
                        f"initial strategy (harp, rates-only) take ':<budget>', one of {', '.join(STRATEGIES.names())}")
    return method, ((takes[0], budget),)


# the method a γ0 sweep varies: the paper's schedule (harp adapts its γ and takes no γ0)
SWEPT_METHOD = "harp-paper"


def harp_gamma0(config: RunConfig) -> float:
    """The γ0 plain ``harp-paper`` cells use: the one set, or the data set's default, or the method's own."""
    probe = cell_config(config, Cell(SWEPT_METHOD, config.prune.sparsity, config.seed), Path("."), Path("."))
    return PRUNERS.options(SWEPT_METHOD, probe.prune.method_options).gamma0


def grid(config: RunConfig) -> list[Cell]:
    """The cells to run, validated: known methods, sparsities in [0, 1), at least one of each, and every prune
    option set is taken by one of the compared methods."""
    c = config.compare
    methods = [_variant(m) for m in parse_list(c.methods, str, "compare.methods")]
    sparsities = parse_list(c.sparsities, float, "compare.sparsities")
    seeds = parse_list(c.seeds, int, "compare.seeds")
    gammas = parse_list(c.gamma0_sweep, float, "compare.gamma0_sweep")
    if (not methods and not gammas) or not sparsities or not seeds:
        raise HarpError("compare needs at least one method (or γ0 value), one sparsity and one seed")
    for s in sparsities:
        if not 0.0 <= s < 1.0:
            raise HarpError(f"compare.sparsities must lie in [0, 1) (0.99 removes 99%), got {s}")
    for g in gammas:
        if g <= 0:
            raise HarpError(f"compare.gamma0_sweep values must be > 0, got {g}")
    cells = [Cell(m, s, seed, options) for s in sparsities for m, options in methods for seed in seeds]
    plain_harp = (SWEPT_METHOD, ()) in methods
    for g in gammas:
        if plain_harp and g == harp_gamma0(config):
            continue  # the plain harp-paper cells already use this γ0
        cells += [Cell(SWEPT_METHOD, s, seed, (("gamma0", g),)) for s in sparsities for seed in seeds]
    compared = sorted({cell.method for cell in cells})
    drop_file_options_not_taken(config, compared)
    check_taken(config, METHOD_BAG, compared)
    return cells


def drop_file_options_not_taken(config: RunConfig, methods: list[str]) -> list[str]:
    """Remove the prune options a config *file* sets that none of ``methods`` takes, and say so.

    A comparison preset carries the options of all its methods (γ0 for HARP, rate_step for frontier);
    ``--compare-methods lamp`` on it must not fail on HARP's γ0, which cannot change a LAMP cell. An option
    set on the command line or in Python is the user's explicit request and stays an error (check_taken).
    """
    taken = {name for method in methods for name in PRUNERS.get(method).takes()}
    dropped = [name for name in config.prune.method_options if name not in taken
               and config.provenance.get(f"prune.{name}", "Python") not in ("command line", "Python")]
    for name in dropped:
        log(f"[compare] prune.{name} (set in {config.provenance[f'prune.{name}']}) is taken by none of "
            f"{', '.join(methods)}; it does not apply to this comparison")
        unset(config, f"prune.{name}")
    return dropped


def cell_config(config: RunConfig, cell: Cell, source: Path, root: Path) -> RunConfig:
    """The user's config with this cell's method, sparsity, seed, out dir, source and variant options, and
    without the prune options its method does not take (they are for the other compared methods)."""
    taken = PRUNERS.get(cell.method).takes()
    provenance = dict(config.provenance)
    options = {key: value for key, value in config.prune.method_options.items()
               if key in taken and user_set(config, f"prune.{key}")}
    for key in set(config.prune.method_options) - set(options):
        provenance[f"prune.{key}"] = "default"
    for key, value in cell.options:
        options[key] = value
        provenance[f"prune.{key}"] = "compare.gamma0_sweep" if key == "gamma0" else "compare.methods"
    prune = replace(config.prune, method=cell.method, sparsity=cell.sparsity, source=str(source),
                    method_options=options)
    finetune = replace(config.finetune, source=None)
    cfg = replace(config, seed=cell.seed, out_dir=str(cell.path(root)), prune=prune, finetune=finetune,
                  provenance=provenance)
    apply_dataset_defaults(cfg)
    return cfg


def not_taken(method: str) -> tuple[str, ...]:
    """The prune option keys ``method`` does not take: they cannot change its cells' results."""
    taken = PRUNERS.get(method).takes()
    return tuple(f"prune.{key}" for key in PRUNERS.option_owners() if key not in taken)


def check_cache(stored: dict[str, Any], config: RunConfig, keys: tuple[str, ...], what: Path,
                ignore: tuple[str, ...] = ()) -> None:
    """Refuse a cached result made under other values of the settings under ``keys``."""
    changed = changed_settings(stored, config.to_dict(), keys, CACHE_NEUTRAL_KEYS + ignore, RunConfig().to_dict())
    if changed:
        raise HarpError(f"{what} was made with different settings ({', '.join(list(changed)[:4])}); "
                        "use another --out-dir or delete it to recompute")
