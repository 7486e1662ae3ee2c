"""What every evaluation shares: its own seeded random stream and the threat model's name."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

THREAT_MODELS = {"linf": "Linf", "l2": "L2"}
# evaluation draws from seed + this offset: a stream of its own, apart from training's (seeded with seed)
EVALUATION_SEED_OFFSET = 1_000_003


@contextlib.contextmanager
def evaluation_rng(seed: int, device: torch.device) -> Iterator[None]:
    """Seed the random starts of an evaluation from the config's seed, and restore the caller's random
    state afterwards, so an evaluation neither depends on nor disturbs what ran before it."""
    devices = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed + EVALUATION_SEED_OFFSET)
        yield


def threat_model(norm: str) -> str:
    return THREAT_MODELS.get(norm, norm)
