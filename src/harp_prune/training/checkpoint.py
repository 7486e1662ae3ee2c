"""Checkpoints: written atomically, read without unpickling code, checked against the model they load into."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from harp_prune.errors import HarpError
from harp_prune.files import write_atomic

FORMAT = "harp-prune-checkpoint"
VERSION = 1
# what every stage checkpoint (final, best and last) holds, and what loading one needs
REQUIRED_KEYS = ("model_spec", "model")


def save_atomic(payload: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """torch.save ``payload`` to a temporary file beside ``path``, fsync, then rename it over ``path``.

    A run killed mid-write leaves the previous checkpoint intact and no half-written file. The payload is
    serialised in memory first: torch.save reports a failed file write (a full disk) as an opaque
    RuntimeError, a plain write says what happened.
    """
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, "version": VERSION, **payload}, buffer)
    return write_atomic(path, buffer.getbuffer())


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True`` (no arbitrary code); clear errors for bad files."""
    path = Path(path)
    if not path.is_file():
        raise HarpError(f"checkpoint {path} does not exist; run the stage that writes it first or fix the path")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for truncated or foreign files
        raise HarpError(
            f"checkpoint {path} is corrupted or not a harp-prune checkpoint ({type(exc).__name__}); "
            "delete it and rerun the stage that writes it"
        ) from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise HarpError(f"{path} is not a harp-prune checkpoint; use a file written by harp")
    missing = [key for key in REQUIRED_KEYS if not isinstance(payload.get(key), dict)]
    if missing:
        raise HarpError(f"{path} is not a complete harp-prune checkpoint (no {', '.join(missing)}); "
                        "use a <stage>/final.pt written by harp or rerun the stage that writes it")
    return payload


def check_state_dict(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Raise a one-line error when ``state`` does not fit ``model`` (another architecture or stage)."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items() if isinstance(v, torch.Tensor)}
    found = {k: tuple(v.shape) for k, v in state.items() if isinstance(v, torch.Tensor)}
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    mismatched = sorted(k for k in set(expected) & set(found) if expected[k] != found[k])
    if missing or unexpected or mismatched:
        detail = []
        if missing:
            detail.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            detail.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if mismatched:
            k = mismatched[0]
            detail.append(f"{len(mismatched)} of another shape (e.g. {k}: {found[k]} vs {expected[k]})")
        raise HarpError(
            f"{source} was written for another model ({'; '.join(detail)}); "
            "use the --model and data set it was trained with, or the checkpoint of this model"
        )


def load_state_into(model: nn.Module, state: dict[str, Any], source: str) -> None:
    check_state_dict(model, state, source)
    model.load_state_dict(state)
