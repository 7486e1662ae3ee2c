"""The three-stage pipeline (adversarial pre-training, pruning, fine-tuning) and evaluation.

These functions are what the CLI calls, and what a Python user calls: each takes a :class:`RunConfig`
and, optionally, the user's own model and data (any ``nn.Module``; any map-style datasets of [0, 1]
images). Stage outputs live in ``<out_dir>/<stage>/final.pt``; ``resume=True`` skips finished stages and
continues an interrupted one from its last finished epoch.
"""

from __future__ import annotations

import json
import platform
import random
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from harp_prune import distributed
from harp_prune.attacks import PGD, Attack
from harp_prune.config import (
    PruneConfig,
    RunConfig,
    StageConfig,
    get,
    is_dataset_default,
    refuse_changed_settings,
    save_config,
    user_set,
)
from harp_prune.data import (
    Splits,
    load_dataset,
    make_loader,
    make_splits,
)
from harp_prune.errors import HarpError
from harp_prune.evaluation import budget_line, comparison_table, evaluate_model, layer_table
from harp_prune.evaluation.sanity import parse_multiples
from harp_prune.evaluation.suite import evaluation_attacks, evaluation_rng, sanity_section, threat_model
from harp_prune.files import ensure_output_dir, write_atomic
from harp_prune.models import build_model
from harp_prune.progress import log
from harp_prune.pruning import (
    STRATEGIES,
    Prunable,
    Pruner,
    build_pruner,
    find_sites,
    masked_layers,
    no_prunable_error,
    pruner_class,
    pruner_options,
    rebuild_pruner,
    unwrap_model,
)
from harp_prune.training import (
    Performance,
    StageSettings,
    build_objective,
    load_checkpoint,
    load_state_into,
    run_stage,
    save_atomic,
)

STAGES = ("pretrain", "prune", "finetune")

# The settings that shape each stage's result: a checkpoint made under other values of these is refused on
# resume. Left out: where and how a run executes or reports (device, out_dir, progress, channels_last,
# compile, data loader workers and evaluation batch size) and what happens after the stage (evaluate, compare).
_SHARED_KEYS = ("model", "seed", "select_on", "amp", "sync_bn", "data", "attack", "pretrain")
RESULT_KEYS = {"pretrain": _SHARED_KEYS, "prune": (*_SHARED_KEYS, "prune"),
               "finetune": (*_SHARED_KEYS, "prune", "finetune")}
RESULT_NEUTRAL_KEYS = ("data.workers", "data.eval_batch_size")


def resolve_device(name: str) -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; anything else is passed to torch.device."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise HarpError(f"unknown device '{name}'; use auto, cpu, cuda, cuda:N or mps") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise HarpError(f"device '{name}' asked for but CUDA is not available; use --device cpu or auto")
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class Context:
    """What every stage of one run shares: config, device, data, loaders, attacks."""

    config: RunConfig
    device: torch.device
    splits: Splits
    train_loader: DataLoader
    select_loader: DataLoader
    test_loader: DataLoader
    out_dir: Path
    user_model: bool = False  # the model is the caller's, not from the zoo: checkpoints cannot rebuild it

    @property
    def dataset_name(self) -> str:
        return self.splits.info.name if self.splits.info is not None else "user data"

    def spec(self) -> dict[str, Any]:
        """How to rebuild the model: a zoo name with input shape, classes and normalisation statistics."""
        info = self.splits.info
        name = None if self.user_model else self.config.model
        if info is None:
            images, _ = next(iter(self.test_loader))
            return {"name": name, "input_shape": list(images.shape[1:]), "num_classes": None, "mean": None,
                    "std": None, "dataset": self.dataset_name}
        return {"name": name, "input_shape": list(info.input_shape), "num_classes": info.num_classes,
                "mean": list(info.mean), "std": list(info.std), "dataset": info.name}


def per_rank_batch(batch_size: int) -> int:
    """Each of N torchrun processes gets ``batch_size / N``, so the global batch (and the lr) stay the same."""
    world = distributed.world_size()
    if batch_size % world:
        raise HarpError(f"data.batch_size {batch_size} is the global batch and must be divisible by the "
                        f"{world} processes; choose a multiple of {world}")
    return batch_size // world


def make_train_loader(config: RunConfig, dataset: Dataset, device: torch.device) -> DataLoader:
    """Shuffled training batches; under torchrun, rank r of N gets every N-th example of each global batch.

    The sampler is a DistributedSampler in every run (one replica without torchrun), reshuffled by
    ``set_epoch`` as a function of (seed, epoch): N processes then see exactly the global batches one
    process would.
    """
    sampler = DistributedSampler(dataset, num_replicas=distributed.world_size(), rank=distributed.rank(),
                                 shuffle=True, seed=config.seed, drop_last=False)
    return make_loader(dataset, per_rank_batch(config.data.batch_size), True, config.seed, config.data.workers,
                       sampler=sampler, pin_memory=device.type == "cuda")


def make_eval_loader(config: RunConfig, dataset: Dataset, device: torch.device) -> DataLoader:
    """Evaluation batches in data-set order; under torchrun each rank reads its shard (ShardSampler) and
    ``predictions``/``evaluate_model`` gather the results, so every rank sees the whole split's figures.
    Commands that evaluate (``harp compare`` too) should build their loaders here."""
    sampler = distributed.ShardSampler(dataset) if distributed.active() else None
    batch = max(1, config.data.eval_batch_size // distributed.world_size())
    return make_loader(dataset, batch, False, config.seed, config.data.workers, sampler=sampler,
                       pin_memory=device.type == "cuda")


def training_attack(config: RunConfig) -> PGD:
    """The configured PGD threat model of training and validation."""
    a = config.attack
    return PGD(a.eps, a.step_size, a.steps, norm=a.norm)


def _given_or(part: Dataset | DataLoader, build) -> DataLoader:
    """A DataLoader the user passed is used as it is (it is not sharded under torchrun); datasets get ours."""
    return part if isinstance(part, DataLoader) else build(part)


def validate_run(config: RunConfig, check_pruner: bool = True) -> None:
    """Refuse a config that could not run to the end, before anything expensive: the pruner (method,
    options, strategies, channel target), every stage's objective, the evaluation attacks and the eps sweep.

    ``check_pruner=False`` is for callers that prune with other configs (``harp compare`` checks each cell's).
    """
    if check_pruner:
        make_pruner(config)
    for stage in STAGES:
        _objective(config, stage)
    evaluation_attacks(config)
    if config.evaluate.eps_sweep:
        parse_multiples(config.evaluate.eps_sweep)


def prepare(config: RunConfig, splits: Splits | None = None, user_model: bool = False, *,
            record_config: bool = True, check_pruner: bool = True) -> Context:
    """Validate the config, load data (unless given), build loaders and resolve the device (and, under
    torchrun, join the group). ``record_config`` writes ``<out_dir>/config.yaml``, the record of how the run's
    stages were made (``harp evaluate`` leaves it alone)."""
    validate_run(config, check_pruner)
    out = ensure_output_dir(config.out_dir, "out_dir")  # before loading data: an unwritable out_dir fails at once
    device = distributed.device_for_rank(resolve_device(config.device))
    distributed.init(device)
    seed_everything(config.seed)
    if splits is None:
        data = load_dataset(config.data.dataset, config.data.root)
        splits = make_splits(data, config.data.val_fraction, config.seed, config.data.test_examples,
                             config.data.train_examples)
    if config.select_on == "val" and splits.val is None:
        raise HarpError("select_on is 'val' but the data has no validation split; set data.val_fraction > 0")
    train = _given_or(splits.train, lambda part: make_train_loader(config, part, device))
    test = _given_or(splits.test, lambda part: make_eval_loader(config, part, device))
    select = _given_or(splits.val, lambda part: make_eval_loader(config, part, device)) \
        if config.select_on == "val" else test
    if distributed.is_main() and record_config:
        save_config(config, out / "config.yaml")
    distributed.barrier()
    return Context(config, device, splits, train, select, test, out, user_model)


def build_from_spec(spec: dict[str, Any]) -> nn.Module:
    if spec.get("name") is None:
        raise HarpError("this checkpoint holds a user-defined model; pass the model instance to load it into")
    return build_model(spec["name"], spec["input_shape"], spec["num_classes"], spec["mean"], spec["std"])


def load_model(path: str | Path, model: nn.Module | None = None,
               device: str | torch.device = "cpu") -> tuple[nn.Module, Pruner | None, dict[str, Any]]:
    """Rebuild the model of any stage checkpoint (masked layers included); returns (model, pruner, checkpoint)."""
    checkpoint = load_checkpoint(path)
    return (*_model_from_checkpoint(checkpoint, str(path), model, device), checkpoint)


def _model_from_checkpoint(checkpoint: dict[str, Any], source: str, model: nn.Module | None,
                           device: str | torch.device) -> tuple[nn.Module, Pruner | None]:
    model = model if model is not None else build_from_spec(checkpoint["model_spec"])
    # The checkpoint's state replaces whatever masks the given model carries (hp.run passes the model it
    # pruned): drop them, so that the pruner below attaches to the plain architecture.
    unwrap_model(model)
    pruner = None
    if checkpoint.get("pruning"):
        pruner = rebuild_pruner(checkpoint["pruning"])
        pruner.attach(model)
    load_state_into(model, checkpoint["model"], source)
    if pruner is not None:
        pruner.adopt(model)
    return model.to(device), pruner


def _source_model(ctx: Context, path: Path, model: nn.Module | None) -> tuple[nn.Module, Pruner | None, dict]:
    """The model of a stage checkpoint, refusing a zoo checkpoint of another architecture; reads the file once."""
    checkpoint = load_checkpoint(path)
    checkpoint_name = checkpoint["model_spec"].get("name")
    if model is None and checkpoint_name != ctx.config.model:
        raise HarpError(
            f"{path} holds a '{checkpoint_name}' model but the config asks for '{ctx.config.model}'; "
            f"pass --model {checkpoint_name} or another checkpoint"
        )
    return (*_model_from_checkpoint(checkpoint, str(path), model, ctx.device), checkpoint)


def _meta(ctx: Context, pruner: Pruner | None) -> dict[str, Any]:
    return {"model_spec": ctx.spec(), "pruning": pruner.describe() if pruner is not None else None,
            "config": ctx.config.to_dict()}


def _settings(ctx: Context, stage: str) -> StageSettings:
    s, c = getattr(ctx.config, stage), ctx.config
    performance = Performance(c.amp, c.channels_last, c.compile, augment=bool(c.data.augment))
    return StageSettings(stage, s.epochs, s.lr, s.momentum, s.weight_decay, c.seed,
                         c.progress and distributed.is_main(), performance, c.sync_bn, RESULT_KEYS[stage],
                         RESULT_NEUTRAL_KEYS)


def _objective(config: RunConfig, stage: str):
    s = getattr(config, stage)
    options = {key: getattr(s, key) for key in ("beta", "replays") if getattr(s, key) is not None}
    return build_objective(s.objective or config.pretrain.objective, training_attack(config), **options)


def _select_attack(config: RunConfig, stage: str) -> Attack | None:
    return training_attack(config) if _objective(config, stage).adversarial else None


def _finish(ctx: Context, stage: str, model: nn.Module, pruner: Pruner | None, result) -> Path:
    path = ctx.out_dir / stage / "final.pt"
    if distributed.is_main():
        save_atomic({**_meta(ctx, pruner), "stage": stage, "model": model.state_dict(), "history": result.history,
                     "best_epoch": result.best_epoch, "metrics": result.best,
                     "budget": pruner.budget_report() if pruner is not None else None}, path)
    distributed.barrier()
    return path


def _finished_stage(ctx: Context, stage: str, model: nn.Module | None) -> nn.Module | None:
    """The output of ``stage`` if an earlier run finished it with the same settings (for ``resume``), else None."""
    stage_dir = ctx.out_dir / stage
    final = stage_dir / "final.pt"
    if not final.exists():
        if not (stage_dir / "last.pt").exists():
            log(f"[{stage}] nothing to resume in {stage_dir}: starting the stage afresh")
        return None
    finished, _, checkpoint = _source_model(ctx, final, model)
    refuse_changed_settings(checkpoint.get("config"), ctx.config.to_dict(), RESULT_KEYS[stage], RESULT_NEUTRAL_KEYS,
                            final)
    log(f"[{stage}] finished earlier: {final}")
    return finished


def pretrain(config: RunConfig, *, model: nn.Module | None = None, splits: Splits | None = None, resume: bool = False,
             ctx: Context | None = None) -> nn.Module:
    """Stage 1: adversarial pre-training of a dense model; writes ``pretrain/final.pt``."""
    ctx = ctx or prepare(config, splits, user_model=model is not None)
    if resume and (finished := _finished_stage(ctx, "pretrain", model)) is not None:
        return finished
    seed_everything(config.seed)
    model = (model if model is not None else build_from_spec(ctx.spec())).to(ctx.device)
    result = run_stage(_settings(ctx, "pretrain"), model, list(model.parameters()), _objective(ctx.config, "pretrain"),
                       ctx.train_loader, ctx.select_loader, _select_attack(ctx.config, "pretrain"), ctx.device,
                       ctx.out_dir / "pretrain", _meta(ctx, None), resume=resume)
    _finish(ctx, "pretrain", model, None, result)
    return model


# prune.* keys that are not pruner options: stage settings, and the three that say what is pruned (every
# method takes them as one ``Prunable``)
_PRUNABLE_KEYS = ("layer_types", "include_parameters", "exclude")
_NOT_PRUNER_OPTIONS = {f.name for f in fields(StageConfig)} | {"method", "sparsity", "source", *_PRUNABLE_KEYS}
# pruner options named differently in the config (prune.channel_target is harp-channel's ``target``)
_OPTION_NAMES = {"channel_target": "target"}
# every prune.* config key that is a pruner option, with the constructor option it sets
PRUNER_OPTION_KEYS = {f"prune.{f.name}": _OPTION_NAMES.get(f.name, f.name) for f in fields(PruneConfig)
                      if f.name not in _NOT_PRUNER_OPTIONS}
# options whose text may be a strategy name or comma-separated per-layer keep-ratios
_STRATEGY_OPTIONS = ("prune.init_strategy", "prune.layer_budget")


def option_keys_taken(method: str) -> list[str]:
    """The prune.* config keys pruning method ``method`` takes."""
    takes = pruner_options(pruner_class(method))
    return [key for key, option in PRUNER_OPTION_KEYS.items() if option in takes]


def _strategy(key: str, text: str) -> str | list[float]:
    """A strategy name (checked against the registered ones) or comma-separated keep-ratios, one per layer."""
    if "," not in text:
        if text not in STRATEGIES:
            raise HarpError(f"unknown layer strategy '{text}' in {key}; choose one of {', '.join(sorted(STRATEGIES))} "
                            "or give one keep-ratio per prunable layer, comma-separated")
        return text
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise HarpError(f"{key} '{text}' is neither a strategy name nor a list of numbers") from None


def pruner_config_options(config: RunConfig) -> dict[str, Any]:
    """The constructor options of the configured method: each prune.* option the user set (refused when the
    method does not take it), the data set's defaults the method takes, and seed, which methods that draw
    at random take. Options nobody set are not passed: the method's own defaults apply."""
    method = config.prune.method
    taken = option_keys_taken(method)
    options: dict[str, Any] = {}
    for key, option in PRUNER_OPTION_KEYS.items():
        value = get(config, key)
        if value is None:  # none: the method's default
            continue
        if user_set(config, key):
            if key not in taken:
                source = config.provenance.get(key, "default")
                where = source if source != "default" and not source.startswith("default for") else "Python code"
                raise HarpError(f"pruning method '{method}' does not take {key} (set in {where}); it takes: "
                                f"{', '.join(taken) or 'none'}; remove the setting or choose a method that uses it")
        elif not (is_dataset_default(config, key) and key in taken):
            continue
        options[option] = _strategy(key, value) if key in _STRATEGY_OPTIONS else value
    if "seed" in pruner_options(pruner_class(method)):
        options["seed"] = config.seed
    options["prunable"] = configured_prunable(config)
    return options


def configured_prunable(config: RunConfig) -> Prunable:
    """What the config says to prune (prune.layer_types, prune.include_parameters, prune.exclude)."""
    return Prunable(*(getattr(config.prune, key) for key in _PRUNABLE_KEYS))


def make_pruner(config: RunConfig, input_shape: tuple[int, ...] | None = None) -> Pruner:
    """The configured pruner; ``input_shape`` (C, H, W) lets structured pruners trace layer shapes."""
    options = pruner_config_options(config)
    if "input_shape" in pruner_options(pruner_class(config.prune.method)):
        options["input_shape"] = input_shape
    return build_pruner(config.prune.method, config.prune.sparsity, **options)


def prune(config: RunConfig, *, model: nn.Module | None = None, splits: Splits | None = None, resume: bool = False,
          ctx: Context | None = None) -> nn.Module:
    """Stage 2: learn masks on the dense model (weights frozen); writes ``prune/final.pt``.

    The dense model comes from ``prune.source`` or ``pretrain/final.pt``, or is ``model`` itself when given
    with trained weights and no source. The selected epoch's rates are then projected onto the budget.
    """
    ctx = ctx or prepare(config, splits, user_model=model is not None)
    if resume and (finished := _finished_stage(ctx, "prune", model)) is not None:
        return finished
    source = Path(config.prune.source) if config.prune.source else ctx.out_dir / "pretrain" / "final.pt"
    if model is None or config.prune.source or source.exists():
        model, _, _ = _source_model(ctx, source, model)
    model = model.to(ctx.device)
    seed_everything(config.seed)
    pruner = make_pruner(config, tuple(ctx.spec()["input_shape"]))
    if masked_layers(model):
        raise HarpError(f"{source} is already pruned; prune a dense (pretrain) checkpoint")
    pruner.attach(model)
    params = pruner.trainable_parameters(model)
    settings = _settings(ctx, "prune")
    if not pruner.needs_training:
        settings.epochs = 0
    elif settings.epochs == 0:
        log("[prune] 0 pruning epochs: nothing is learned; the masks are the initial strategy's, on the initial "
            "scores, projected onto the budget")
    result = run_stage(settings, model, params, _objective(ctx.config, "prune"), ctx.train_loader, ctx.select_loader,
                       _select_attack(ctx.config, "prune"), ctx.device, ctx.out_dir / "prune", _meta(ctx, pruner),
                       pruner=pruner, resume=resume)
    shift = pruner.finalize()
    report, budget = pruner.report(model), pruner.budget_report()
    log(f"[prune] budget projection shifted the rate logits by {shift:+.4f}: {budget_line(budget)} "
        f"(--sparsity {pruner.sparsity} of {budget['sparsity_of']}), "
        f"{report.kept:,} of {report.total:,} weights kept")
    _finish(ctx, "prune", model, pruner, result)
    return model


def finetune(config: RunConfig, *, model: nn.Module | None = None, splits: Splits | None = None, resume: bool = False,
             ctx: Context | None = None) -> nn.Module:
    """Stage 3: train weights and BatchNorm with the masks fixed; writes ``finetune/final.pt``."""
    ctx = ctx or prepare(config, splits, user_model=model is not None)
    if resume and (finished := _finished_stage(ctx, "finetune", model)) is not None:
        return finished
    source = Path(config.finetune.source) if config.finetune.source else ctx.out_dir / "prune" / "final.pt"
    model, pruner, _ = _source_model(ctx, source, model)
    if pruner is None:
        raise HarpError(f"{source} is not a pruned checkpoint; fine-tune the output of 'harp prune'")
    seed_everything(config.seed)
    frozen = {id(p) for layer in pruner.layers for p in (layer.scores, layer.rate)}
    for param in model.parameters():  # the mask stays fixed: scores and rates frozen, the rest trained
        param.requires_grad_(id(param) not in frozen)
    params = [p for p in model.parameters() if p.requires_grad]
    result = run_stage(_settings(ctx, "finetune"), model, params, _objective(ctx.config, "finetune"), ctx.train_loader,
                       ctx.select_loader, _select_attack(ctx.config, "finetune"), ctx.device, ctx.out_dir / "finetune",
                       _meta(ctx, pruner), resume=resume)
    _finish(ctx, "finetune", model, pruner, result)
    return model


def evaluate(config: RunConfig, *, model: nn.Module | None = None, splits: Splits | None = None,
             checkpoint: str | Path | None = None, ctx: Context | None = None,
             budget: dict[str, Any] | None = None) -> dict[str, Any]:
    """Natural and robust accuracy (``evaluate.attacks``, default PGD-k) on the test split, their point-wise
    worst case, balanced accuracy, counted sparsity and the eps-sweep sanity check; returns JSON-ready data.
    ``budget`` is the pruner's ``budget_report()`` for a given ``model`` (a loaded checkpoint brings its own)."""
    ctx = ctx or prepare(config, splits, user_model=model is not None, record_config=False)
    if model is None:
        path = Path(checkpoint or config.evaluate.checkpoint or ctx.out_dir / "finetune" / "final.pt")
        model, pruner, _ = _source_model(ctx, path, None)
        budget = pruner.budget_report() if pruner is not None else None
    model = model.to(ctx.device)
    attacks = evaluation_attacks(config, ctx.out_dir / "autoattack")
    # the attacks' random starts depend on the config alone, not on what ran before (a resumed run skips
    # stages), and leave the caller's random stream as it was
    with evaluation_rng(config.seed, ctx.device):
        result = evaluate_model(model, ctx.test_loader, attacks, ctx.device,
                                config.progress and distributed.is_main())
        if config.evaluate.eps_sweep:
            result["sanity"] = sanity_section(config, model, ctx.test_loader, ctx.device)
    result.update({"dataset": ctx.dataset_name, "eps": config.attack.eps, "norm": config.attack.norm,
                   "threat_model": threat_model(config.attack.norm), "clean_acc": result["natural_acc"],
                   "n_examples": result["examples"], "seed": config.seed, "budget": budget})
    if "sanity" in result:
        result["flags"] += [f"sanity: {w}" for w in result["sanity"]["warnings"]]
        for warning in result["sanity"]["warnings"]:
            log(f"[evaluate] warning: {warning}")
    return result


def environment() -> dict[str, str]:
    from harp_prune import __version__
    from harp_prune.attacks import pyautoattack_version

    return {"harp_prune": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "pyautoattack": pyautoattack_version() or "not installed", "python": platform.python_version(),
            "platform": platform.platform()}


def write_json(data: Any, path: Path) -> None:
    """Write ``data`` atomically (rank 0 only under torchrun)."""
    if not distributed.is_main():
        return
    write_atomic(path, json.dumps(data, indent=2, default=float))


def run(config: RunConfig, *, model: nn.Module | None = None, splits: Splits | None = None,
        resume: bool = False) -> dict[str, Any]:
    """All stages, then dense-vs-pruned evaluation; writes ``results.json`` and ``summary.md``."""
    started = time.perf_counter()
    ctx = prepare(config, splits, user_model=model is not None)
    if model is not None and not find_sites(model, configured_prunable(config))[0]:
        raise no_prunable_error(configured_prunable(config))  # now, not after pre-training
    log(f"harp run: {type(model).__name__ if model is not None else config.model} on {ctx.dataset_name} "
        f"({len(ctx.train_loader.dataset)} train, {len(ctx.select_loader.dataset)} selection, "
        f"{len(ctx.test_loader.dataset)} test), "
        f"{config.prune.method} to sparsity {config.prune.sparsity}, device {ctx.device}, out {ctx.out_dir}")
    dense = pretrain(config, model=model, resume=resume, ctx=ctx)
    dense_eval = evaluate(config, model=dense, ctx=ctx)
    pruned = prune(config, model=dense, resume=resume, ctx=ctx)
    pruned = finetune(config, model=pruned if model is not None else None, resume=resume, ctx=ctx)
    finals = {stage: load_checkpoint(ctx.out_dir / stage / "final.pt") for stage in STAGES}
    pruned_eval = evaluate(config, model=pruned, ctx=ctx, budget=finals["finetune"].get("budget"))
    histories = {stage: final["history"] for stage, final in finals.items()}
    results = {
        "config": config.to_dict(), "provenance": {k: v for k, v in config.provenance.items() if v != "default"},
        "dense": dense_eval, "pruned": pruned_eval, "history": histories,
        "wall_seconds": time.perf_counter() - started, "environment": environment(),
    }
    write_json(results, ctx.out_dir / "results.json")
    summary = summarize(results)
    if distributed.is_main():
        write_atomic(ctx.out_dir / "summary.md", summary + "\n")
    log(summary)
    return results


def summarize(results: dict[str, Any]) -> str:
    table = comparison_table({"dense": results["dense"], "pruned": results["pruned"]})
    return (f"## dense vs pruned ({results['config']['prune']['method']}, "
            f"{results['pruned']['examples']} test images, eps {results['pruned']['eps']:.4g})\n\n{table}\n\n"
            f"## per-layer keep-ratios of the pruned model\n\n{layer_table(results['pruned'])}\n\n"
            f"wall time: {results['wall_seconds']:.0f} s")
