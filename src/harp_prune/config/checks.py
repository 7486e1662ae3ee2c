"""Rejecting settings that cannot work, before any data is loaded or any epoch is trained."""

from __future__ import annotations

from typing import Any

from harp_prune.config.keys import (
    OPTION_BAGS,
    OptionBag,
    check_choice,
    chosen_components,
    config_keys,
    get,
)
from harp_prune.config.schema import RunConfig
from harp_prune.data import DATASETS
from harp_prune.errors import HarpError
from harp_prune.registry import flag_name


def _check_threat_model(config: RunConfig) -> None:
    """eps and step size are set (by the user or the data set's defaults) and positive."""
    a = config.attack
    if a.eps is None or a.step_size is None:
        DATASETS.get(config.data.dataset)  # an unknown data set is named as such
        raise HarpError(f"no default eps/step size is known for data set '{config.data.dataset}'; "
                        "set attack.eps and attack.step_size")
    for name, value in (("eps", a.eps), ("step_size", a.step_size)):
        if not value > 0:
            raise HarpError(f"attack.{name} must be > 0 (e.g. 0.1 for Fashion-MNIST, 8/255 for CIFAR), got {value}")


def _positive_counts(config: RunConfig) -> dict[str, int | None]:
    """Settings that count things and must be >= 1 (None: no limit)."""
    d, e = config.data, config.evaluate
    return {"data.batch_size": d.batch_size, "data.eval_batch_size": d.eval_batch_size,
            "data.train_examples": d.train_examples, "data.test_examples": d.test_examples,
            "attack.steps": config.attack.steps, "evaluate.pgd_steps": e.pgd_steps,
            "evaluate.sanity_examples": e.sanity_examples, "compare.jobs": config.compare.jobs}


def where_set(config: RunConfig, key: str) -> str:
    source = config.provenance.get(key, "Python code")
    return "Python code" if source.startswith("default") else source


def check_taken(config: RunConfig, bag: OptionBag, components: list[str] | None = None) -> None:
    """Every option set in ``bag``'s dict is taken by one of the chosen ``components`` (default: the ones the
    config chooses); otherwise an error names the option, where it was set and the components."""
    chosen = components if components is not None else chosen_components(config, bag)
    values = getattr(getattr(config, bag.section), bag.field)
    for component in chosen:
        bag.registry.get(component)  # an unknown component is named as such
    taken = {name for component in chosen for name in bag.registry.get(component).takes()}
    for name in values:
        if name not in taken:
            key = f"{bag.section}.{name}"
            what = f"{bag.registry.kind} '{chosen[0]}'" if len(chosen) == 1 else \
                f"none of the {bag.registry.kind}s {', '.join(chosen)}"
            raise HarpError(f"{what} does not take {key} (set in {where_set(config, key)}); it takes: "
                            f"{', '.join(sorted(taken)) or 'no options'}; remove the setting or choose "
                            f"another {bag.registry.kind}")


def check_component_options(config: RunConfig, include_method: bool = True) -> None:
    """The options set for the objectives, the evaluation attacks and (``include_method``) the pruning method
    are taken by the components chosen, and the values of those they take are valid (each options dataclass
    checks its own)."""
    for bag in OPTION_BAGS:
        if bag.field != "method_options" or include_method:
            check_taken(config, bag)
        for component in chosen_components(config, bag):
            component_options(config, bag, component)


def component_options(config: RunConfig, bag: OptionBag, component: str) -> Any:
    """The typed options of ``component`` from the values set in ``bag``'s dict that it takes; a value its
    options refuse is reported under its config key (``prune.gamma0 must be >= 0 ...``)."""
    values = getattr(getattr(config, bag.section), bag.field)
    taken = bag.registry.get(component).takes()
    mine = {key: value for key, value in values.items() if key in taken}
    try:
        return bag.registry.options(component, mine)
    except HarpError as error:
        text = str(error)
        if text.split(" ", 1)[0] in mine:
            raise HarpError(f"{bag.section}.{text}") from None
        raise


def validate(config: RunConfig) -> None:
    """Reject settings that cannot work; the pruning method's options are checked where the pruner is made
    (``harp compare`` sets them for several methods at once)."""
    for key, found in config_keys().items():
        if found.bag is None:
            check_choice(found, get(config, key))
    _check_threat_model(config)
    for key, value in _positive_counts(config).items():
        if value is not None and value < 1:
            raise HarpError(f"{key} must be >= 1, got {value}; set {flag_name(key)} to a positive number")
    if config.data.workers < 0:
        raise HarpError(f"data.workers must be >= 0 (0 loads data in the main process), got {config.data.workers}")
    if not 0.0 <= config.data.val_fraction < 1.0:
        raise HarpError(f"data.val_fraction must be in [0, 1) (0.1 holds out 10% of the training images), "
                        f"got {config.data.val_fraction}")
    if not 0.0 <= config.prune.sparsity < 1.0:
        raise HarpError(
            f"prune.sparsity must be in [0, 1) (0.99 removes 99% of the weights), got {config.prune.sparsity}"
        )
    if config.select_on == "val" and config.data.val_fraction <= 0:
        raise HarpError("select_on is 'val' but data.val_fraction is 0; hold out some data or select on 'test'")
    for name in ("pretrain", "prune", "finetune"):
        stage = getattr(config, name)
        if stage.epochs < 0:
            raise HarpError(f"{name}.epochs must be >= 0, got {stage.epochs}")
        if not stage.lr > 0:
            raise HarpError(f"{name}.lr must be > 0 (the initial learning rate, e.g. 0.1), got {stage.lr}")
    check_component_options(config, include_method=False)
