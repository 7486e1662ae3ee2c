"""Training-time augmentation of batches on the device: random crop (zero padding) and horizontal flip."""

from __future__ import annotations

import torch


def augment_batch(images: torch.Tensor, padding: int = 4, flip: bool = True,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Random crop with zero padding and random horizontal flip of a whole N x C x H x W batch (any device)."""
    n, c, h, w = images.shape
    device = images.device
    padded = torch.nn.functional.pad(images, (padding, padding, padding, padding))
    dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(device)
    dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(device)
    rows = (dy[:, None] + torch.arange(h, device=device))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w, device=device))[:, None, None, :]
    batch = torch.arange(n, device=device)[:, None, None, None]
    out = padded[batch, torch.arange(c, device=device)[None, :, None, None], rows, cols]
    if flip:
        flipped = torch.rand(n, generator=generator).to(device) < 0.5
        out = torch.where(flipped[:, None, None, None], out.flip(3), out)
    return out
