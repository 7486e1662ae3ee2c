"""Checkpoints: written atomically, read without unpickling code, checked against the model they load into."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from harp_prune.errors import HarpError
from harp_prune.files import write_atomic
from harp_prune.models import build_model
from harp_prune.pruning import Pruner, rebuild_pruner, unwrap_model

FORMAT = "harp-prune-checkpoint"
VERSION = 1
# what every stage checkpoint (final, best and last) holds, and what loading one needs
REQUIRED_KEYS = ("model_spec", "model")
# how a file torch.save wrote begins: a zip archive, or a pickle (the format before PyTorch 1.6)
TORCH_FILE_STARTS = (b"PK\x03\x04", b"\x80")


def _what_it_holds(head: bytes) -> str:
    """A file that torch.save did not write, in words (``head``: its first bytes)."""
    try:
        text = head.decode("utf-8").lstrip()
    except UnicodeDecodeError:
        return "data of another format"
    if not text:
        return "nothing" if not head else "only white space"
    return "JSON text" if text[0] in "{[" else "text"


def save_atomic(payload: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """torch.save ``payload`` to a temporary file beside ``path``, fsync, then rename it over ``path``.

    A run killed mid-write leaves the previous checkpoint intact and no half-written file. The payload is
    serialised in memory first: torch.save reports a failed file write (a full disk) as an opaque
    RuntimeError, a plain write says what happened.
    """
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, "version": VERSION, **payload}, buffer)
    return write_atomic(path, buffer.getbuffer())


def check_checkpoint_exists(path: str | os.PathLike[str]) -> Path:
    """``path``, or the error that names the stage to run first when it is not a file."""
    path = Path(path)
    if not path.is_file():
        raise HarpError(f"checkpoint {path} does not exist; run the stage that writes it first or fix the path")
    return path


def load_verified(path: Path, what: str, fix: str, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load(weights_only=True)`` (no arbitrary code) of a file whose every archive member first passes
    its CRC-32 check: torch.load itself reads bytes damaged inside a tensor without noticing, and a model
    with silently wrong weights would be trained on, evaluated or exported. ``what`` names the file in
    messages (``checkpoint``), ``fix`` says what to do about a bad one."""
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
        if damaged is None:
            return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # zipfile and torch raise many types for truncated or foreign files
        raise HarpError(f"{what} {path} is corrupted or not a harp-prune {what} ({type(exc).__name__}); "
                        f"{fix}") from exc
    raise HarpError(f"{what} {path} is damaged: its member {damaged} fails its CRC check (the file changed after "
                    f"it was written); {fix}")


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint verified by its CRCs with ``weights_only=True``; clear errors for bad files."""
    path = check_checkpoint_exists(path)
    with open(path, "rb") as stream:
        head = stream.read(512)
    if not head.startswith(TORCH_FILE_STARTS):  # a results file, a config: say what it is, not that it is broken
        raise HarpError(f"{path} is not a checkpoint (it holds {_what_it_holds(head)}, not a file written by "
                        "torch.save); give a <stage>/final.pt written by harp, e.g. runs/default/finetune/final.pt")
    payload = load_verified(path, "checkpoint", "rerun the stage that writes it or give another checkpoint",
                            map_location)
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


def build_from_spec(spec: dict[str, Any]) -> nn.Module:
    """The zoo model a checkpoint's ``model_spec`` names, for its input shape, classes and normalisation."""
    if spec.get("name") is None:
        raise HarpError("this checkpoint holds a user-defined model; pass the model instance to load it into")
    return build_model(spec["name"], spec["input_shape"], spec["num_classes"], spec["mean"], spec["std"])


def model_from_checkpoint(checkpoint: dict[str, Any], source: str, model: nn.Module | None = None,
                          device: str | torch.device = "cpu") -> tuple[nn.Module, Pruner | None]:
    """The model of a loaded stage checkpoint (built from its spec unless ``model`` is given), with its masks
    and the pruner that made them."""
    model = model if model is not None else build_from_spec(checkpoint["model_spec"])
    # The checkpoint's state replaces whatever masks the given model carries (hp.run passes the model it
    # pruned): drop them, so that the pruner below attaches to the plain architecture.
    unwrap_model(model)
    pruner = None
    if checkpoint.get("pruning"):
        pruner = rebuild_pruner(checkpoint["pruning"])
        pruner.attach(model)
    load_state_into(model, checkpoint["model"], source)
    if pruner is not None:
        pruner.adopt(model)
    return model.to(device), pruner


def load_model(path: str | Path, model: nn.Module | None = None,
               device: str | torch.device = "cpu") -> tuple[nn.Module, Pruner | None, dict[str, Any]]:
    """Rebuild the model of any stage checkpoint (masks included); returns (model, pruner, checkpoint).

    Example::

        model, pruner, checkpoint = load_model("runs/default/finetune/final.pt")
        print(pruner.budget_report(), checkpoint["metrics"])
    """
    checkpoint = load_checkpoint(path)
    return (*model_from_checkpoint(checkpoint, str(path), model, device), checkpoint)
