"""Results as data: JSON written atomically (rank 0 only under torchrun), with the environment that made them."""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harp_prune import distributed
from harp_prune.attacks import pyautoattack_version
from harp_prune.files import write_atomic
from harp_prune.version import __version__


def environment() -> dict[str, Any]:
    """What produced a result: harp-prune, torch, numpy, pyautoattack, Python, the platform, and torch's CPU
    threads (float sums split over a different number of threads round differently, so a CPU run repeats
    bit for bit only with the same count)."""
    return {"harp_prune": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "pyautoattack": pyautoattack_version() or "not installed", "python": platform.python_version(),
            "platform": platform.platform(), "torch_threads": torch.get_num_threads()}


def write_json(data: Any, path: Path) -> None:
    """Write ``data`` atomically (rank 0 only under torchrun)."""
    if not distributed.is_main():
        return
    write_atomic(path, json.dumps(data, indent=2, default=float))
