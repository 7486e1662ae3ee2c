"""Multi-process runs on PyTorch's own distributed engine (torchrun + DistributedDataParallel).

Everything here is a no-op in a plain single-process run, so the pipeline calls these helpers
unconditionally. Under ``torchrun`` (which sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT) the
process group is created on first use: nccl when the run is on CUDA, gloo otherwise; each process
drives ``cuda:LOCAL_RANK``.

Rules the pipeline follows with these helpers:

- the training forward goes through :func:`wrap_for_training` (DDP averages the gradients, so every
  rank takes the same optimiser step and the parameters, hence the masks, stay identical);
- attacks and evaluation run on the plain module, each rank on its own shard (:class:`ShardSampler`),
  and the predictions are gathered back into the original order (:func:`gather_shards`);
- only rank 0 writes files (:func:`is_main`), and everyone waits for it (:func:`barrier`) before reading;
- the pruning masks are compared across ranks every epoch (``training/replicas.py``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Dataset, Sampler

from harp_prune.errors import HarpError

_ENV_KEYS = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


def launched() -> bool:
    """Whether this process was started by torchrun (or another launcher setting RANK and WORLD_SIZE)."""
    return all(key in os.environ for key in ("RANK", "WORLD_SIZE")) and int(os.environ["WORLD_SIZE"]) > 1


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_initialized() else int(os.environ.get("RANK", 0)) if launched() else 0


def world_size() -> int:
    return dist.get_world_size() if is_initialized() else int(os.environ.get("WORLD_SIZE", 1)) if launched() else 1


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", 0)) if launched() else 0


def is_main() -> bool:
    """True on rank 0 (and in any single-process run): the one process that logs and writes files."""
    return rank() == 0


def active() -> bool:
    """Whether more than one process takes part (DDP, sharded evaluation and reductions are in use)."""
    return is_initialized() and dist.get_world_size() > 1


def device_for_rank(device: torch.device) -> torch.device:
    """Pin each process of a CUDA run to ``cuda:LOCAL_RANK``; other devices are returned unchanged."""
    if not launched() or device.type != "cuda":
        return device
    index = local_rank()
    if index >= torch.cuda.device_count():
        raise HarpError(f"LOCAL_RANK {index} but only {torch.cuda.device_count()} CUDA devices are visible; "
                        "start at most that many processes per node (torchrun --nproc-per-node)")
    torch.cuda.set_device(index)
    return torch.device("cuda", index)


def init(device: torch.device, backend: str | None = None, timeout_s: float = 1800.0) -> bool:
    """Create the process group from torchrun's environment if there is one; returns whether one exists.

    ``backend`` None picks nccl for CUDA and gloo for everything else. Calling it again is harmless.
    """
    if is_initialized():
        return True
    if not launched():
        return False
    missing = [key for key in ("MASTER_ADDR", "MASTER_PORT") if key not in os.environ]
    if missing:
        raise HarpError(f"RANK/WORLD_SIZE are set but {', '.join(missing)} is not; start the run with torchrun")
    backend = backend or ("nccl" if device.type == "cuda" else "gloo")
    kwargs: dict[str, Any] = {"backend": backend, "timeout": timedelta(seconds=timeout_s)}
    if backend == "nccl":
        kwargs["device_id"] = device
    dist.init_process_group(**kwargs)
    return True


def cleanup() -> None:
    """Tear the process group down (end of a CLI command); a no-op when there is none."""
    if is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if active():
        dist.barrier()


def _reduce_device() -> torch.device:
    """nccl only reduces CUDA tensors; gloo only CPU ones."""
    if active() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_sum(values: dict[str, float]) -> dict[str, float]:
    """Sum each value over all ranks (float64, so counts stay exact); returns a new dict."""
    if not active() or not values:
        return dict(values)
    keys = list(values)
    tensor = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=_reduce_device())
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return dict(zip(keys, tensor.cpu().tolist(), strict=True))


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank (small picklable things: decisions, pruner state, log rows)."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src, device=_reduce_device() if dist.get_backend() == "nccl" else None)
    return box[0]


@torch.no_grad()
def broadcast_state(module: nn.Module, buffers_only: bool = False, src: int = 0) -> None:
    """Overwrite every rank's parameters (unless ``buffers_only``) and buffers with rank ``src``'s, in place."""
    if not active():
        return
    tensors = list(module.buffers()) if buffers_only else [*module.parameters(), *module.buffers()]
    for tensor in tensors:
        if tensor.device.type == "cpu" and dist.get_backend() == "nccl":
            staged = tensor.to(_reduce_device())
            dist.broadcast(staged, src=src)
            tensor.copy_(staged)
        else:
            dist.broadcast(tensor.data, src=src)


def all_gather_object(obj: Any) -> list[Any]:
    if not active():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


class ShardSampler(Sampler[int]):
    """Rank r of W reads examples r, r + W, r + 2W, ... in order: no padding, so gathered results count
    every example exactly once (DistributedSampler repeats examples to even the shards out)."""

    def __init__(self, dataset: Dataset, num_replicas: int | None = None, rank_: int | None = None) -> None:
        self.length = len(dataset)  # type: ignore[arg-type]
        self.num_replicas = num_replicas if num_replicas is not None else world_size()
        self.rank = rank_ if rank_ is not None else rank()

    def indices(self) -> list[int]:
        return list(range(self.rank, self.length, self.num_replicas))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices())

    def __len__(self) -> int:
        return len(range(self.rank, self.length, self.num_replicas))


def gather_shards(local: torch.Tensor, sampler: ShardSampler) -> torch.Tensor:
    """Put every rank's per-example results (in its shard's order) back into the data set's order."""
    if not active():
        return local
    parts = all_gather_object(local.cpu())
    out = torch.empty((sampler.length, *local.shape[1:]), dtype=local.dtype)
    for source, part in enumerate(parts):
        out[source::sampler.num_replicas] = part
    return out


class TrainForward(nn.Module):
    """DDP for the training forward, the plain module for everything else.

    PGD and the other attacks switch the model to eval mode and differentiate only with respect to the
    input; through DDP such a forward would leave the reducer waiting for gradients that never come. So
    in eval mode (or without grad) this calls the module itself, and only the forward whose loss is
    back-propagated goes through DDP, which averages the gradients over the ranks.
    """

    def __init__(self, module: nn.Module, ddp: nn.Module) -> None:
        super().__init__()
        self.module = module
        self.ddp = ddp

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if self.training and torch.is_grad_enabled():
            return self.ddp(*args, **kwargs)
        return self.module(*args, **kwargs)


def wrap_for_training(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` in a single-process run; in a distributed one, :class:`TrainForward` around a DDP of it.

    Build it after ``requires_grad`` is set for the stage: DDP registers its hooks on the parameters that
    require grad at construction (pruning: scores, rates, BatchNorm; fine-tuning: weights and BatchNorm),
    and it broadcasts rank 0's parameters and buffers so all ranks start identical. Every parameter that
    requires grad is used by every forward (the straight-through estimator passes gradients to S and r),
    so ``find_unused_parameters`` stays off.
    """
    if not active():
        return model
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [device.index] if device.type == "cuda" else None
    ddp = DistributedDataParallel(model, device_ids=device_ids)  # syncs rank 0's buffers (BN) every forward
    return TrainForward(model, ddp)


def convert_sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """SyncBatchNorm (batch statistics over all ranks) for a CUDA run; PyTorch supports it on GPUs only."""
    if not active():
        return model
    if device.type != "cuda":
        raise HarpError("sync_bn needs CUDA (PyTorch's SyncBatchNorm is GPU-only); drop --sync-bn on CPU")
    return nn.SyncBatchNorm.convert_sync_batchnorm(model)
