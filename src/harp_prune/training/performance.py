"""GPU throughput switches for the training step: bf16 autocast, channels_last, torch.compile.

All are off unless asked for (config keys ``amp``, ``channels_last``, ``compile``), on every device:
they change numerics (bf16) or add start-up cost (compile), and on a CPU they are slower, not faster.
What they never touch: the masks and the sparsity bookkeeping. The scores S and rates r stay fp32
parameters, the top-k that builds the mask runs outside autocast's casting list on fp32 scores, the
mask is stored in the weight's dtype (fp32), and HARP's size loss is computed outside autocast.
Evaluation and the per-epoch selection attack run in fp32, so reported robustness is never a bf16 figure.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn

from harp_prune.errors import HarpError
from harp_prune.training.augment import augment_batch


@dataclass
class Performance:
    """How the training step runs; the defaults are plain fp32 eager PyTorch."""

    amp: bool = False  # bf16 autocast around the attack and the forward of each training step
    channels_last: bool = False  # NHWC memory format for the model and the input batches (tensor cores)
    compile: bool = False  # torch.compile the training forward (first steps are slow while it compiles)
    # random crop (pad 4) + horizontal flip of every training batch, done on the device after the transfer
    # so that the loader workers only gather uint8 images and never become the bottleneck of a GPU
    augment: bool = False

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        """bf16 autocast on ``device`` when ``amp`` is on (bf16 needs no loss scaling, unlike fp16)."""
        if not self.amp:
            return contextlib.nullcontext()
        if device.type not in ("cuda", "cpu", "xpu"):
            raise HarpError(f"amp (bf16 autocast) is not supported on {device.type}; drop --amp")
        return torch.autocast(device.type, dtype=torch.bfloat16)

    def batch(self, images: torch.Tensor, device: torch.device) -> torch.Tensor:
        """Move a batch to ``device`` (asynchronously from pinned memory), augment it there if asked, and
        make it NHWC if ``channels_last``."""
        images = images.to(device, non_blocking=True)
        if self.augment:
            images = augment_batch(images)
        if self.channels_last and images.ndim == 4:
            images = images.contiguous(memory_format=torch.channels_last)
        return images

    def prepare(self, model: nn.Module) -> nn.Module:
        """Convert ``model``'s 4-D parameters and buffers to channels_last in place (if asked); returns it."""
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        return model

    def compiled(self, model: nn.Module) -> nn.Module:
        """``torch.compile(model)`` if asked; the parameters stay shared with ``model``."""
        if not self.compile:
            return model
        if not hasattr(torch, "compile"):
            raise HarpError("compile needs PyTorch 2.0 or later; drop --compile")
        import torch._dynamo as dynamo

        # A graph the compiler cannot lower (seen on CPU with tiny feature maps) runs eagerly instead of
        # aborting a days-long run; the masks' Python-side cache causes graph breaks, not errors.
        dynamo.config.suppress_errors = True
        return torch.compile(model)  # type: ignore[return-value]
