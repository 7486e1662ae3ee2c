"""What every stage of one run shares: the device, seeding, the data and its loaders (``Context``)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from harp_prune import distributed
from harp_prune.config import RunConfig, save_config
from harp_prune.data import Splits, load_dataset, make_loader, make_splits
from harp_prune.errors import HarpError
from harp_prune.files import check_output_dir


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
    """What every stage of one run shares: config, device, data, loaders."""

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


def _size(part: Dataset | DataLoader | None) -> int | None:
    """How many examples a split holds (None: unknown, an iterable dataset, or no split)."""
    dataset = part.dataset if isinstance(part, DataLoader) else part
    try:
        return len(dataset)  # type: ignore[arg-type]
    except TypeError:
        return None


def check_not_empty(config: RunConfig, splits: Splits) -> None:
    """Refuse a split without examples: training on none ends every epoch with loss 0, evaluating none in NaN."""
    limits = {"train": ("data.train_examples", config.data.train_examples),
              "test": ("data.test_examples", config.data.test_examples)}
    for name, part in (("train", splits.train), ("validation", splits.val), ("test", splits.test)):
        if _size(part) != 0:
            continue
        key, limit = limits.get(name, ("", None))
        if splits.info is not None and limit is not None:
            raise HarpError(f"{key} {limit} keeps no {name} image (the subset is stratified over the "
                            f"{splits.info.num_classes} classes); set it to at least {splits.info.num_classes}")
        raise HarpError(f"the {name} split holds no examples; give it at least one (image, label) pair")


def _given_or(part: Dataset | DataLoader, build) -> DataLoader:
    """A DataLoader the user passed is used as it is (it is not sharded under torchrun); datasets get ours."""
    return part if isinstance(part, DataLoader) else build(part)


def open_context(config: RunConfig, splits: Splits | None = None, user_model: bool = False, *,
                 record_config: bool = True) -> Context:
    """Load data (unless given), build loaders and resolve the device (and, under torchrun, join the group).
    ``record_config`` writes ``<out_dir>/config.yaml``, the record of how the run's stages were made."""
    out = check_output_dir(config.out_dir, "out_dir")  # before loading data: an unwritable out_dir fails at once
    device = distributed.device_for_rank(resolve_device(config.device))
    distributed.init(device)
    seed_everything(config.seed)
    if splits is None:
        data = load_dataset(config.data.dataset, config.data.root)
        splits = make_splits(data, config.data.val_fraction, config.seed, config.data.test_examples,
                             config.data.train_examples)
    check_not_empty(config, splits)
    if config.select_on == "val" and splits.val is None:
        raise HarpError("select_on is 'val' but the data has no validation split; set data.val_fraction > 0")
    train = _given_or(splits.train, lambda part: make_train_loader(config, part, device))
    test = _given_or(splits.test, lambda part: make_eval_loader(config, part, device))
    select = _given_or(splits.val, lambda part: make_eval_loader(config, part, device)) \
        if config.select_on == "val" else test
    ctx = Context(config, device, splits, train, select, test, out, user_model)
    if record_config:
        record_run_config(ctx)
    return ctx


def record_run_config(ctx: Context) -> None:
    """Write ``<out_dir>/config.yaml``, the record of how the run's stages were made (rank 0; the others wait)."""
    if distributed.is_main():
        save_config(ctx.config, ctx.out_dir / "config.yaml")
    distributed.barrier()
