"""One typed configuration for every stage: dataclass defaults < YAML file < Python values < command-line flags.

``schema.py`` declares the sections, ``keys.py`` every settable key (the sections' fields and the options the
components declare), ``loading.py`` builds a config from files, flags and Python values, ``checks.py``
rejects what cannot work. A value the user set is never overridden: data-set defaults fill only what nobody
set, and where each value came from is recorded in ``provenance``.

Example::

    import harp_prune as hp
    config = hp.build_config(prune={"method": "hydra", "sparsity": 0.99, "layer_budget": "lamp"})
"""

from harp_prune.config.checks import check_component_options, check_taken, component_options, validate
from harp_prune.config.keys import METHOD_BAG, OPTION_BAGS, Key, OptionBag, config_keys, get, sections
from harp_prune.config.loading import (
    apply_dataset_defaults,
    build_config,
    default_value,
    read_yaml,
    save_config,
    set_key,
    unset,
    user_set,
)
from harp_prune.config.schema import (
    AttackConfig,
    CompareConfig,
    DataConfig,
    EvalConfig,
    FinetuneConfig,
    PretrainConfig,
    PruneConfig,
    RunConfig,
    StageConfig,
)
from harp_prune.registry import flag_name

__all__ = [
    "METHOD_BAG",
    "OPTION_BAGS",
    "AttackConfig",
    "CompareConfig",
    "DataConfig",
    "EvalConfig",
    "FinetuneConfig",
    "Key",
    "OptionBag",
    "PretrainConfig",
    "PruneConfig",
    "RunConfig",
    "StageConfig",
    "apply_dataset_defaults",
    "build_config",
    "check_component_options",
    "check_taken",
    "component_options",
    "config_keys",
    "default_value",
    "flag_name",
    "get",
    "read_yaml",
    "save_config",
    "sections",
    "set_key",
    "unset",
    "user_set",
    "validate",
]
