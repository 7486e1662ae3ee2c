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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from harp_prune import distributed
from harp_prune.attacks import PGD, Attack
from harp_prune.config import RunConfig, save_config
from harp_prune.data import (
    Splits,
    load_dataset,
    make_loader,
    make_splits,
)
from harp_prune.errors import HarpError
from harp_prune.evaluation import budget_line, comparison_table, evaluate_model, layer_table
from harp_prune.evaluation.suite import evaluation_attacks, sanity_section, threat_model
from harp_prune.files import ensure_output_dir, write_atomic
from harp_prune.models import build_model
from harp_prune.progress import log
from harp_prune.pruning import Prunable, Pruner, build_pruner, masked_layers, unwrap_model
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

    def attack(self, steps: int | None = None, restarts: int = 1) -> PGD:
        """The configured PGD threat model (training/validation), or a stronger one for evaluation."""
        a = self.config.attack
        return PGD(a.eps, a.step_size, steps if steps is not None else a.steps, restarts=restarts, norm=a.norm)

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


def _given_or(part: Dataset | DataLoader, build) -> DataLoader:
    """A DataLoader the user passed is used as it is (it is not sharded under torchrun); datasets get ours."""
    return part if isinstance(part, DataLoader) else build(part)


def prepare(config: RunConfig, splits: Splits | None = None, user_model: bool = False) -> Context:
    """Load data (unless given), build loaders and resolve the device (and, under torchrun, join the group)."""
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
    if distributed.is_main():
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
        options = dict(checkpoint["pruning"])
        pruner = build_pruner(options.pop("method"), options.pop("sparsity"), **options)
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
                         c.progress and distributed.is_main(), performance, c.sync_bn)


def _objective(ctx: Context, stage: str):
    s = getattr(ctx.config, stage)
    options = {key: getattr(s, key) for key in ("beta", "replays") if getattr(s, key) is not None}
    return build_objective(s.objective or ctx.config.pretrain.objective, ctx.attack(), **options)


def _select_attack(ctx: Context, stage: str) -> Attack | None:
    objective = _objective(ctx, stage)
    return ctx.attack() if objective.adversarial else None


def _finish(ctx: Context, stage: str, model: nn.Module, pruner: Pruner | None, result) -> Path:
    path = ctx.out_dir / stage / "final.pt"
    if distributed.is_main():
        save_atomic({**_meta(ctx, pruner), "stage": stage, "model": model.state_dict(), "history": result.history,
                     "best_epoch": result.best_epoch, "metrics": result.best,
                     "budget": pruner.budget_report() if pruner is not None else None}, path)
    distributed.barrier()
    return path


def _finished_stage(ctx: Context, stage: str, model: nn.Module | None) -> nn.Module | None:
    """The output of ``stage`` if an earlier run finished it (for ``resume``), else None."""
    final = ctx.out_dir / stage / "final.pt"
    if not final.exists():
        return None
    log(f"[{stage}] finished earlier: {final}")
    return _source_model(ctx, final, model)[0]


def pretrain(config: RunConfig, *, model: nn.Module | None = None, splits: Splits | None = None, resume: bool = False,
             ctx: Context | None = None) -> nn.Module:
    """Stage 1: adversarial pre-training of a dense model; writes ``pretrain/final.pt``."""
    ctx = ctx or prepare(config, splits, user_model=model is not None)
    if resume and (finished := _finished_stage(ctx, "pretrain", model)) is not None:
        return finished
    seed_everything(config.seed)
    model = (model if model is not None else build_from_spec(ctx.spec())).to(ctx.device)
    result = run_stage(_settings(ctx, "pretrain"), model, list(model.parameters()), _objective(ctx, "pretrain"),
                       ctx.train_loader, ctx.select_loader, _select_attack(ctx, "pretrain"), ctx.device,
                       ctx.out_dir / "pretrain", _meta(ctx, None), resume=resume)
    _finish(ctx, "pretrain", model, None, result)
    return model


def make_pruner(config: RunConfig, input_shape: tuple[int, ...] | None = None) -> Pruner:
    """The configured pruner; ``input_shape`` (C, H, W) lets structured pruners trace layer shapes."""
    p = config.prune
    strategy: str | list[float] = p.init_strategy
    if "," in strategy:
        try:
            strategy = [float(v) for v in strategy.split(",")]
        except ValueError:
            raise HarpError(
                f"prune.init_strategy '{p.init_strategy}' is neither a strategy name nor a list of numbers"
            ) from None
    optional = {"init_density": p.init_density} if p.init_density is not None else {}
    prunable = Prunable(p.layer_types, p.include_parameters, p.exclude)
    return build_pruner(p.method, p.sparsity, prunable=prunable, gamma0=p.gamma0, alpha=p.alpha, init_strategy=strategy,
                        target=p.channel_target, input_shape=input_shape, layer_budget=p.layer_budget,
                        seed=config.seed, min_layer_density=p.min_layer_density,
                        max_layer_density=p.max_layer_density, rate_frontier=p.rate_frontier, **optional)


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
    result = run_stage(settings, model, params, _objective(ctx, "prune"), ctx.train_loader, ctx.select_loader,
                       _select_attack(ctx, "prune"), ctx.device, ctx.out_dir / "prune", _meta(ctx, pruner),
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
    result = run_stage(_settings(ctx, "finetune"), model, params, _objective(ctx, "finetune"), ctx.train_loader,
                       ctx.select_loader, _select_attack(ctx, "finetune"), ctx.device, ctx.out_dir / "finetune",
                       _meta(ctx, pruner), resume=resume)
    _finish(ctx, "finetune", model, pruner, result)
    return model


def evaluate(config: RunConfig, *, model: nn.Module | None = None, splits: Splits | None = None,
             checkpoint: str | Path | None = None, ctx: Context | None = None,
             budget: dict[str, Any] | None = None) -> dict[str, Any]:
    """Natural and robust accuracy (``evaluate.attacks``, default PGD-k) on the test split, their point-wise
    worst case, balanced accuracy, counted sparsity and the eps-sweep sanity check; returns JSON-ready data.
    ``budget`` is the pruner's ``budget_report()`` for a given ``model`` (a loaded checkpoint brings its own)."""
    ctx = ctx or prepare(config, splits, user_model=model is not None)
    if model is None:
        path = Path(checkpoint or config.evaluate.checkpoint or ctx.out_dir / "finetune" / "final.pt")
        model, pruner, _ = _source_model(ctx, path, None)
        budget = pruner.budget_report() if pruner is not None else None
    model = model.to(ctx.device)
    attacks = evaluation_attacks(config, ctx.out_dir / "autoattack")
    result = evaluate_model(model, ctx.test_loader, attacks, ctx.device, config.progress and distributed.is_main())
    result.update({"dataset": ctx.dataset_name, "eps": config.attack.eps, "norm": config.attack.norm,
                   "threat_model": threat_model(config.attack.norm), "clean_acc": result["natural_acc"],
                   "n_examples": result["examples"], "seed": config.seed, "budget": budget})
    if config.evaluate.eps_sweep:
        result["sanity"] = sanity_section(config, model, ctx.test_loader, ctx.device)
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
    log(f"harp run: {type(model).__name__ if model is not None else config.model} on {ctx.dataset_name} "
        f"({len(ctx.train_loader.dataset)} train, {len(ctx.select_loader.dataset)} selection, "
        f"{len(ctx.test_loader.dataset)} test), "
        f"{config.prune.method} to sparsity {config.prune.sparsity}, device {ctx.device}, out {ctx.out_dir}")
    dense = pretrain(config, model=model, resume=resume, ctx=ctx)
    dense_eval = evaluate(config, model=dense, ctx=ctx)
    pruned = prune(config, model=dense, resume=resume, ctx=ctx)
    pruned = finetune(config, model=pruned if model is not None else None, resume=resume, ctx=ctx)
    pruned_eval = evaluate(config, model=pruned, ctx=ctx,
                           budget=load_checkpoint(ctx.out_dir / "finetune" / "final.pt").get("budget"))
    histories = {stage: load_checkpoint(ctx.out_dir / stage / "final.pt")["history"] for stage in STAGES}
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
