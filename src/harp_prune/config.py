"""One typed configuration for every stage: dataclass defaults < YAML file < command-line flags.

Data-set-dependent values (the attack's eps and step size) default to ``None`` and are filled from the
data set's defaults only when nobody set them, so a value the user set is never overridden (the official
code silently forces lr, beta and paths). Where each value came from is recorded in ``provenance``.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harp_prune.errors import HarpError
from harp_prune.files import write_atomic


@dataclass
class DataConfig:
    dataset: str = "fashion-mnist-small"  # fashion-mnist-small (embedded) | fashion-mnist | ...
    root: str | None = None  # folder of the data files for on-disk data sets
    val_fraction: float = 0.1  # stratified share of the training data held out for model selection
    batch_size: int = 128  # the global batch: under torchrun each of N processes gets batch_size / N
    eval_batch_size: int = 500
    train_examples: int | None = None  # train on a stratified subset of the training split (quick runs)
    test_examples: int | None = None  # evaluate on a stratified subset of the test split
    workers: int = 0  # DataLoader worker processes
    augment: bool | None = None  # random crop (pad 4) + horizontal flip of training batches; None: data set default


@dataclass
class AttackConfig:
    """The threat model of training and of validation (PGD-k, L-inf by default)."""

    norm: str = "linf"
    eps: float | None = None  # None: the data set's default (Fashion-MNIST 0.1, CIFAR 8/255)
    step_size: float | None = None  # None: the data set's default (Fashion-MNIST 0.025, CIFAR 2/255)
    steps: int = 10


@dataclass
class StageConfig:
    epochs: int = 10
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    objective: str | None = None  # None: pretrain's objective
    beta: float | None = None  # TRADES/MART trade-off; None: the paper's (TRADES 6, MART 5)
    replays: int | None = None  # Free-AT replays per mini-batch; None: 4


@dataclass
class PretrainConfig(StageConfig):
    epochs: int = 10
    objective: str | None = "pgd_at"


@dataclass
class PruneConfig(StageConfig):
    method: str = "harp"
    sparsity: float = 0.99  # fraction of conv/linear weights removed
    epochs: int = 8
    lr: float = 0.1
    # first γ and per-epoch increment of the step-wise schedule. None: the data set's default, 0.01 (the
    # paper's, for ~390 steps per epoch) unless the data set has far fewer steps per epoch
    gamma0: float | None = None
    alpha: float = 0.1  # a_min = alpha * (1 - sparsity)
    init_strategy: str = "uniform"  # a strategy name, or comma-separated keep-ratios, one per layer
    init_density: float | None = None  # density the initial strategy starts from; None: the method's default
    # (harp: 0.1 for all targets, as the official code; harp-channel: 0.99, the official 'original')
    channel_target: str = "channels"  # harp-channel budget: channels (sparsity of widths) | flops | params
    source: str | None = None  # dense checkpoint to prune; None: <out_dir>/pretrain/final.pt
    layer_budget: str = "uniform"  # fixed-rate methods (hydra): per-layer budget strategy at the target density
    min_layer_density: float = 0.0  # HARP: floor on every layer's keep-ratio (a_min if higher)
    max_layer_density: float = 1.0  # HARP: ceiling on every layer's keep-ratio
    # HARP's rate gradient: 0 = the paper's sum of all mask gradients; f > 0 = N x their mean over the
    # ceil(f * kept) last kept and next pruned weights of each layer (a harp-prune extension, docs/compare.md)
    rate_frontier: float = 0.0
    # What is pruned (every method): module types whose weights get masks (conv1d, conv2d, conv3d, linear,
    # attention = nn.MultiheadAttention's input projections), extra parameters by name or glob pattern
    # (e.g. "*.pos_embedding"), and module/parameter names or glob patterns left dense (e.g. "net.classifier.*")
    layer_types: str = "conv2d,linear,attention"
    include_parameters: str = ""
    exclude: str = ""


@dataclass
class FinetuneConfig(StageConfig):
    epochs: int = 8
    lr: float = 0.01
    source: str | None = None  # pruned checkpoint; None: <out_dir>/prune/final.pt


@dataclass
class EvalConfig:
    pgd_steps: int = 20
    pgd_restarts: int = 1
    attacks: str | None = None  # e.g. pgd20,autoattack (fgsm, pgdK, cwK, apgd-ce); None: pgd<pgd_steps>
    autoattack_version: str = "standard"  # standard | plus | rand, or comma-separated components (apgd-ce,square)
    eps_sweep: str | None = "0.5,1,2,16"  # sanity check: PGD at these multiples of eps; none: skip
    sanity_examples: int = 500  # test images the eps sweep uses
    checkpoint: str | None = None  # for `harp evaluate`; None: <out_dir>/finetune/final.pt


@dataclass
class CompareConfig:
    """`harp compare`: every method at every sparsity (and seed) from one pre-trained model."""

    methods: str = "harp,hydra,lwm,global-magnitude,lamp,erk,random"  # comma-separated pruning methods
    sparsities: str = "0.9,0.99,0.999"  # comma-separated target sparsities
    seeds: str = "0"  # comma-separated seeds of pruning + fine-tuning (one pre-training)
    gamma0_sweep: str = ""  # comma-separated γ0 values: extra HARP cells, e.g. "0.001,0.01,0.1"
    jobs: int = 1  # cells run at once, each in its own process on the same device (a small model leaves a GPU idle)


@dataclass
class RunConfig:
    model: str = "small_cnn"
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    out_dir: str = "runs/default"
    select_on: str = "val"  # val (held-out training data) | test (the official code's choice)
    progress: bool = True
    amp: bool = False  # bf16 autocast for the attack and forward of training steps (CUDA; slow on CPU)
    channels_last: bool = False  # NHWC memory format for conv models on GPUs
    compile: bool = False  # torch.compile the training forward
    sync_bn: bool = False  # SyncBatchNorm across torchrun ranks (CUDA only); default: per-rank BN statistics
    data: DataConfig = field(default_factory=DataConfig)
    attack: AttackConfig = field(default_factory=AttackConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    prune: PruneConfig = field(default_factory=PruneConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    evaluate: EvalConfig = field(default_factory=EvalConfig)
    compare: CompareConfig = field(default_factory=CompareConfig)
    provenance: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out.pop("provenance")
        return out


DATASET_DEFAULTS: dict[str, dict[str, Any]] = {
    # 9k training images give ~70 steps per epoch at batch 128, 5x fewer than CIFAR's ~390: γ grows once
    # per epoch, so a 5x larger γ0 reaches the budget within the default 8 pruning epochs (measured:
    # γ0 = 0.01 never reaches it there, γ0 = 0.05 reaches it at epoch 4).
    "fashion-mnist-small": {"attack.eps": 0.1, "attack.step_size": 0.025, "prune.gamma0": 0.05},
    "fashion-mnist": {"attack.eps": 0.1, "attack.step_size": 0.025},
}


# The value of a None key when the data set sets none either.
FALLBACK_DEFAULTS: dict[str, Any] = {"prune.gamma0": 0.01}


def register_dataset_defaults(dataset: str, defaults: dict[str, Any]) -> None:
    """Values (by dotted key) that fill unset fields when ``dataset`` is chosen."""
    DATASET_DEFAULTS[dataset] = defaults


SECTIONS = tuple(f.name for f in dataclasses.fields(RunConfig) if dataclasses.is_dataclass(f.default_factory))


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def field_types() -> dict[str, Any]:
    """Every settable key ("seed", "prune.sparsity", ...) with its annotated type."""
    out: dict[str, Any] = {}
    hints = _hints(RunConfig)
    for f in dataclasses.fields(RunConfig):
        if f.name == "provenance":
            continue
        if f.name in SECTIONS:
            for name, tp in _hints(hints[f.name]).items():
                out[f"{f.name}.{name}"] = tp
        else:
            out[f.name] = hints[f.name]
    return out


def coerce(key: str, value: Any, tp: Any) -> Any:
    """Convert ``value`` (from YAML or a flag string) to type ``tp``, or explain what is wrong."""
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
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if tp is float:
            return float(value)
        if tp is str:
            return str(value)
    except (TypeError, ValueError):
        pass
    else:
        raise HarpError(f"config key '{key}' has an unsupported type {tp}")
    name = getattr(tp, "__name__", str(tp))
    raise HarpError(f"config key '{key}' must be {name}{' or none' if optional else ''}, got {value!r}")


def _set(config: RunConfig, key: str, value: Any) -> None:
    section, _, name = key.rpartition(".")
    target = getattr(config, section) if section else config
    setattr(target, name, value)


def get(config: RunConfig, key: str) -> Any:
    section, _, name = key.rpartition(".")
    return getattr(getattr(config, section) if section else config, name)


def _flatten(mapping: dict[str, Any], source: str) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        if key in SECTIONS:
            if not isinstance(value, dict):
                raise HarpError(f"'{key}' in {source} must be a mapping of settings, got {value!r}")
            flat.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            flat[key] = value
    return flat


def read_yaml(path: str | Path) -> dict[str, Any]:
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
    return _flatten(loaded, str(path))


def build_config(file_values: dict[str, Any] | None = None, cli_values: dict[str, Any] | None = None,
                 file_name: str = "config file") -> RunConfig:
    """Defaults, then the file's values, then the command line's, then data-set defaults for what is unset."""
    config = RunConfig()
    types_by_key = field_types()
    provenance = {key: "default" for key in types_by_key}
    for values, source in ((file_values or {}, file_name), (cli_values or {}, "command line")):
        for key, value in values.items():
            if key not in types_by_key:
                close = [k for k in types_by_key if k.endswith(f".{key}") or k.split(".")[-1] == key.split(".")[-1]]
                hint = f" (did you mean {', '.join(close[:3])}?)" if close else ""
                raise HarpError(f"unknown config key '{key}' in {source}{hint}")
            _set(config, key, coerce(key, value, types_by_key[key]))
            provenance[key] = source
    defaults = DATASET_DEFAULTS.get(config.data.dataset, {})
    for key, value in defaults.items():
        if get(config, key) is None and provenance[key] == "default":
            _set(config, key, value)
            provenance[key] = f"default for {config.data.dataset}"
    for key, value in FALLBACK_DEFAULTS.items():
        if get(config, key) is None:
            _set(config, key, value)
    config.provenance = provenance
    validate(config)
    return config


ATTACK_NORMS = ("linf", "l2")


def _check_threat_model(config: RunConfig) -> None:
    """eps and step size are set (by the user or the data set's defaults), positive, in a known norm."""
    a = config.attack
    if a.eps is None or a.step_size is None:
        from harp_prune.data.datasets import DATASET_LOADERS  # here: the data package imports this module

        if config.data.dataset not in DATASET_LOADERS:
            raise HarpError(f"unknown data set '{config.data.dataset}'; choose one of "
                            f"{', '.join(sorted(DATASET_LOADERS))}")
        raise HarpError(
            f"no default eps/step size is known for data set '{config.data.dataset}'; "
            "set attack.eps and attack.step_size"
        )
    if a.norm not in ATTACK_NORMS:
        raise HarpError(f"attack.norm must be one of {', '.join(ATTACK_NORMS)}, got '{a.norm}'")
    for name, value in (("eps", a.eps), ("step_size", a.step_size)):
        if not value > 0:
            raise HarpError(f"attack.{name} must be > 0 (e.g. 0.1 for Fashion-MNIST, 8/255 for CIFAR), got {value}")


def _positive_counts(config: RunConfig) -> dict[str, int | None]:
    """Settings that count things and must be >= 1 (None: no limit)."""
    d, e = config.data, config.evaluate
    return {"data.batch_size": d.batch_size, "data.eval_batch_size": d.eval_batch_size,
            "data.train_examples": d.train_examples, "data.test_examples": d.test_examples,
            "attack.steps": config.attack.steps, "evaluate.pgd_steps": e.pgd_steps,
            "evaluate.pgd_restarts": e.pgd_restarts, "evaluate.sanity_examples": e.sanity_examples,
            "compare.jobs": config.compare.jobs}


def default_value(key: str, dataset: str) -> Any:
    """The value ``build_config`` gives ``key`` when nobody sets it (data-set defaults included)."""
    dataset_defaults = DATASET_DEFAULTS.get(dataset, {})
    if key in dataset_defaults:
        return dataset_defaults[key]
    value = get(RunConfig(), key)
    return FALLBACK_DEFAULTS.get(key) if value is None else value


def is_dataset_default(config: RunConfig, key: str) -> bool:
    """Whether ``key`` holds the chosen data set's own default (e.g. prune.gamma0 for fashion-mnist-small)."""
    return key in DATASET_DEFAULTS.get(config.data.dataset, {}) and not user_set(config, key)


def user_set(config: RunConfig, key: str) -> bool:
    """Whether the user chose ``key``'s value: in a file or flag (provenance), or by assigning it in Python."""
    source = config.provenance.get(key, "default")
    if source != "default" and not source.startswith("default for "):
        return True
    return get(config, key) != default_value(key, config.data.dataset)


def unset(config: RunConfig, key: str) -> None:
    """Give ``key`` the value it has when nobody sets it, as ``build_config`` would (provenance included)."""
    dataset = config.data.dataset
    _set(config, key, default_value(key, dataset))
    config.provenance[key] = f"default for {dataset}" if key in DATASET_DEFAULTS.get(dataset, {}) else "default"


def _flat_settings(settings: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key in keys:
        value = settings.get(key)
        if isinstance(value, dict):
            flat.update({f"{key}.{name}": v for name, v in value.items()})
        else:
            flat[key] = value
    return flat


def changed_settings(old: dict[str, Any], new: dict[str, Any], keys: tuple[str, ...],
                     ignore: tuple[str, ...] = ()) -> dict[str, tuple[Any, Any]]:
    """``{key: (old, new)}`` for the settings under ``keys`` (top-level keys or whole sections) that differ
    between two ``RunConfig.to_dict()`` records; ``ignore`` lists dotted keys that may differ.

    A setting missing from ``old`` was added to harp-prune after it was written: it had its default then.
    """
    flat_old = {**_flat_settings(RunConfig().to_dict(), keys), **_flat_settings(old, keys)}
    flat_new = _flat_settings(new, keys)
    return {key: (flat_old.get(key), flat_new.get(key)) for key in sorted(flat_old.keys() | flat_new.keys())
            if key not in ignore and flat_old.get(key) != flat_new.get(key)}


def refuse_changed_settings(recorded: dict[str, Any] | None, current: dict[str, Any], keys: tuple[str, ...],
                            ignore: tuple[str, ...], source: str | Path) -> None:
    """Raise when the checkpoint ``source`` was made under other values of the settings under ``keys``
    (``recorded``, its saved config) than ``current``'s: resuming would finish a run nobody asks for any more."""
    changes = changed_settings(recorded or {}, current, keys, ignore)
    if changes:
        made_with = "; ".join(f"{key}={old}, now {new}" for key, (old, new) in changes.items())
        raise HarpError(f"{source} was made with {made_with}; rerun without --resume in a new --out-dir, "
                        "or restore the setting")


def validate(config: RunConfig) -> None:
    """Reject settings that cannot work, before any data is loaded or any epoch is trained."""
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
    if config.prune.gamma0 is not None and not config.prune.gamma0 >= 0:
        raise HarpError(f"prune.gamma0 must be >= 0 (the per-epoch step of the size loss weight, e.g. 0.01), "
                        f"got {config.prune.gamma0}")
    if config.select_on not in ("val", "test"):
        raise HarpError(f"select_on must be 'val' or 'test', got '{config.select_on}'")
    if config.select_on == "val" and config.data.val_fraction <= 0:
        raise HarpError("select_on is 'val' but data.val_fraction is 0; hold out some data or select on 'test'")
    for name in ("pretrain", "prune", "finetune"):
        stage = getattr(config, name)
        if stage.epochs < 0:
            raise HarpError(f"{name}.epochs must be >= 0, got {stage.epochs}")
        if not stage.lr > 0:
            raise HarpError(f"{name}.lr must be > 0 (the initial learning rate, e.g. 0.1), got {stage.lr}")


def flag_name(key: str) -> str:
    """The command-line flag of a config key: ``data.batch_size`` is ``--data-batch-size``."""
    return "--" + key.replace(".", "-").replace("_", "-")


def save_config(config: RunConfig, path: str | Path) -> None:
    """Write the effective configuration, with where each non-default value came from as comments."""
    changed = {k: v for k, v in config.provenance.items() if v != "default"}
    header = ["# effective harp-prune configuration", *(f"# {k}: {v}" for k, v in sorted(changed.items()))]
    write_atomic(path, "\n".join(header) + "\n" + yaml.safe_dump(config.to_dict(), sort_keys=False))

