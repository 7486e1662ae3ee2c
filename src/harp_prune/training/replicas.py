"""Replicas under torchrun must hold the same masks: a checksum of every mask, compared across ranks each epoch."""

from __future__ import annotations

import hashlib

import torch
from torch import nn

from harp_prune import distributed
from harp_prune.errors import HarpError
from harp_prune.pruning import masked_layers


@torch.no_grad()
def mask_checksum(model: nn.Module) -> int:
    """One int64 summarising which weights every WeightMask keeps (a hash of each layer's kept indices)."""
    digest = hashlib.blake2b(digest_size=8)
    for name, layer in masked_layers(model).items():
        kept = torch.flatten(layer.mask()).nonzero().flatten().to("cpu", torch.int64)
        digest.update(name.encode())
        digest.update(kept.numpy().tobytes())
    return int.from_bytes(digest.digest(), "little", signed=True)


def check_masks_agree(model: nn.Module, where: str) -> int:
    """Compare :func:`mask_checksum` across ranks; raise if any rank's masks differ. Returns the checksum."""
    mine = mask_checksum(model)
    sums = distributed.all_gather_object(mine)
    if len(set(sums)) > 1:
        raise HarpError(f"the pruning masks differ between ranks after {where} (checksums {sums}); the ranks "
                        "have diverged: check that every rank runs the same code, config and data")
    return mine
