"""Rejecting settings that cannot work, before any data is loaded or any epoch is trained."""

from __future__ import annotations

from typing import Any

from harp_prune.config.keys import (
    METHOD_BAG,
    OPTION_BAGS,
    OptionBag,
    check_choice,
    chosen_components,
    config_keys,
    get,
)
from harp_prune.config.schema import CompareConfig, RunConfig
from harp_prune.data import DATASETS
from harp_prune.errors import HarpError
from harp_prune.pruning import PRUNERS, Prunable
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


def check_taken(config: RunConfig, bag: OptionBag, components: list[str] | None = None,
                sources: tuple[str, ...] | None = None) -> None:
    """Every option set in ``bag``'s dict (only those set from ``sources``, when given) is taken by one of the
    chosen ``components`` (default: the ones the config chooses); otherwise an error names the option, where
    it was set and the components."""
    chosen = components if components is not None else chosen_components(config, bag)
    values = [name for name in getattr(getattr(config, bag.section), bag.field)
              if sources is None or config.provenance.get(f"{bag.section}.{name}") in sources]
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


def pruning_methods(config: RunConfig) -> list[str]:
    """The pruning methods a config can run: ``prune.method``, and those of ``compare.methods`` when it was
    changed from its default (a comparison's config sets options for all of its methods at once)."""
    methods = [config.prune.method]
    if config.compare.methods != CompareConfig().methods:
        methods += [name.split(":")[0].strip() for name in config.compare.methods.split(",") if name.strip()]
    return list(dict.fromkeys(methods))


def check_pruning(config: RunConfig) -> None:
    """What is pruned and how: the layer types and patterns, each method option set in Python or on the command
    line is taken by a method the config can run (a file may hold options for methods it does not run: a
    preset's for methods a comparison may add; the run's pruner and the comparison's grid check those), the
    values are valid, and the configured method can be made with them."""
    prunable = Prunable(config.prune.layer_types, config.prune.include_parameters, config.prune.exclude)
    check_taken(config, METHOD_BAG, pruning_methods(config), sources=("Python", "command line"))
    for method in pruning_methods(config):
        component_options(config, METHOD_BAG, method)
    PRUNERS.get(config.prune.method).factory(config.prune.sparsity, component_options(
        config, METHOD_BAG, config.prune.method), prunable=prunable, seed=config.seed)


def validate(config: RunConfig) -> None:
    """Reject settings that cannot work, what is pruned and how included (``check_pruning``)."""
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
        if not 0.0 <= stage.momentum < 1.0:  # beyond 1 SGD's steps grow without bound; Adam refuses it
            raise HarpError(f"{name}.momentum must be in [0, 1) (e.g. 0.9), got {stage.momentum}")
    check_component_options(config, include_method=False)
    check_pruning(config)
