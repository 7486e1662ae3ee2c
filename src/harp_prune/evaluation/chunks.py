"""Whole-split evaluations cut into fixed chunks, so that N torchrun processes give one process's result.

AutoAttack reseeds its random starts per batch, and a seeded eps sweep draws PGD noise in order, so what
an example gets depends on which examples share its batch. Cutting the evaluated examples into consecutive
chunks of a fixed size and evaluating every chunk on its own (with its own seed) makes each chunk's result
a function of the chunk alone. Under torchrun rank r evaluates chunks r, r + N, ...; every rank then
receives all chunks' results in order, so each example is evaluated exactly once and the figures equal a
single-process run's whatever the number of processes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, SequentialSampler, TensorDataset

from harp_prune import distributed

Result = TypeVar("Result")
ChunkWork = Callable[[int, torch.Tensor, torch.Tensor], Result]  # (first position, images, labels) -> result


def gather(loader: DataLoader) -> tuple[torch.Tensor, torch.Tensor]:
    """All (images, labels) of a non-shuffled loader as two CPU tensors, in loader order."""
    images, labels = zip(*((x, y) for x, y in loader), strict=True)
    return torch.cat(images), torch.cat(labels)


@dataclass
class Split:
    """The evaluated examples, readable by position in the order the loader evaluates them.

    Our evaluation loaders read their data set in order (one process) or by shards (torchrun), so the
    data set itself is read, a chunk at a time; any other loader (a user's) is read once through and held.
    """

    dataset: Dataset
    collate: Callable | None
    batch_size: int

    @classmethod
    def of(cls, loader: DataLoader) -> Split:
        batch_size = loader.batch_size or 1
        if isinstance(loader.sampler, SequentialSampler | distributed.ShardSampler):
            return cls(loader.dataset, loader.collate_fn, batch_size)
        return cls(TensorDataset(*gather(loader)), None, batch_size)

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def read(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        return gather(DataLoader(self.dataset, batch_size=self.batch_size, sampler=list(indices),
                                 collate_fn=self.collate))


def evaluate_in_chunks(split: Split, indices: Sequence[int], chunk_size: int,
                       work: ChunkWork[Result]) -> list[Result]:
    """``work(start, images, labels)`` on each chunk of ``chunk_size`` of the examples at ``indices``.

    ``start`` is the chunk's first position in ``indices``. In a distributed run each rank evaluates its
    share of the chunks; every rank returns the results of all chunks, in order.
    """
    world, rank = (distributed.world_size(), distributed.rank()) if distributed.active() else (1, 0)
    indices = [int(i) for i in indices]
    starts = range(0, len(indices), chunk_size)
    mine = {}
    for number in range(rank, len(starts), world):
        start = starts[number]
        images, labels = split.read(indices[start:start + chunk_size])
        mine[start] = work(start, images, labels)
    results = {start: result for part in distributed.all_gather_object(mine) for start, result in part.items()}
    return [results[start] for start in starts]


@contextmanager
def seeded(seed: int | None, *keys: int, device: torch.device | None = None) -> Iterator[None]:
    """Draw torch's random numbers from a stream of (seed, *keys), restoring the caller's state afterwards;
    a no-op when ``seed`` is None (the global stream, as before)."""
    if seed is None:
        yield
        return
    devices = [device] if device is not None and device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(np.random.SeedSequence([seed, *keys]).generate_state(1)[0]))
        yield
