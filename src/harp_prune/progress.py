"""Progress bars and log lines that do not tear each other apart (everything goes through tqdm)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")


def progress(iterable: Iterable[T], desc: str, enabled: bool, total: int | None = None) -> Iterator[T] | tqdm:
    """A tqdm bar over ``iterable`` (or the iterable itself when disabled)."""
    if not enabled:
        return iter(iterable)
    return tqdm(iterable, desc=desc, total=total, leave=False, dynamic_ncols=True, file=sys.stderr)


def log(message: str) -> None:
    """Print one line above any active progress bar (in a torchrun run: on rank 0 only, which torchrun's RANK
    variable names before and after the process group exists)."""
    if int(os.environ.get("RANK", "0")) == 0:
        tqdm.write(message, file=sys.stdout)
