"""Exports of pruned models that are really smaller: zeroed state dict, sparse checkpoint, slim model, ONNX.

``export_model(model, fmt, output, input_shape)`` exports a pruned model held in memory;
``export_checkpoint(path, fmt)`` loads a stage checkpoint (``<stage>/final.pt``) and exports its model, a
user-defined architecture too when given ``model=``; it is what ``harp export`` calls. Both report sizes.
See docs/export.md.
"""

from __future__ import annotations

import copy
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from harp_prune.errors import HarpError
from harp_prune.export.csr import CSRLinear, sparsify_linears
from harp_prune.export.onnx import export_onnx, onnx_max_error
from harp_prune.export.slim import ChannelSelect, SlimPlan, load_slim, save_slim, slim_model
from harp_prune.export.sparse import entropy_bytes, load_sparse, save_sparse
from harp_prune.export.zeroed import zeroed_model, zeroed_state_dict
from harp_prune.files import atomic_output, check_output_file
from harp_prune.training import load_checkpoint, load_model

FORMATS = ("zeroed", "sparse", "slim", "onnx")
SUFFIX = {"zeroed": ".zeroed.pt", "sparse": ".sparse.safetensors", "slim": ".slim.pt", "onnx": ".onnx"}


def _file_size(path: Path) -> int:
    return path.stat().st_size


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise HarpError(f"unknown export format '{fmt}'; choose one of {', '.join(FORMATS)}")


def export_model(model: nn.Module, fmt: str, output: str | Path, input_shape: Sequence[int], *, slim: bool = False,
                 model_spec: dict[str, Any] | None = None, source: str | None = None) -> dict[str, Any]:
    """Export a pruned model (masked layers, as pruning leaves it) as ``fmt``; returns a JSON-ready report.

    ``model`` is not modified. ``input_shape`` (C, H, W) is what slimming traces and ONNX declares; ``slim``
    (ONNX only) exports the channel-slimmed model instead of the zeroed one. ``model_spec`` (default: a
    user-defined model, ``{"name": None, "input_shape": ...}``) is stored in sparse and slim files, and
    ``source`` (e.g. the checkpoint's path) in the report and the sparse file. The model spec and how to load
    each format: docs/export.md ("Your own model").

    Example::

        report = hp.export_model(pruned_model, "onnx", "model.onnx", input_shape=(3, 32, 32), slim=True)
        print(report["bytes"], report["onnx_max_error"])
    """
    _check_format(fmt)
    input_shape = tuple(int(d) for d in input_shape)
    spec = model_spec if model_spec is not None else {"name": None, "input_shape": list(input_shape)}
    output = check_output_file(output, "export output")
    model = copy.deepcopy(model).cpu().eval()  # slimming works in place; exports are CPU files
    report: dict[str, Any] = {"checkpoint": source, "format": fmt, "output": str(output)}
    zeroed = zeroed_model(model)
    state = zeroed_state_dict(model)
    dense_file = _torch_bytes(state)  # the zeroed export itself, and the dense size every format is compared to
    report["dense_bytes"] = len(dense_file)
    with atomic_output(output) as tmp:  # a full disk or a failed export leaves no partial file
        if fmt == "zeroed":
            tmp.write_bytes(dense_file)
        elif fmt == "sparse":
            sizes = save_sparse(state, tmp, {"model_spec": spec, "source": source})
            report.update(sizes.as_dict())
        elif fmt == "slim" or (fmt == "onnx" and slim):
            slimmed, plan = slim_model(model, input_shape)
            report["slim_params"] = sum(p.numel() for p in slimmed.parameters())
            report["dense_params"] = sum(p.numel() for p in zeroed.parameters())
            report["gathers"] = len(plan.gathers)
            if fmt == "slim":
                save_slim(slimmed, plan, spec, tmp)
            else:
                export_onnx(slimmed, input_shape, tmp)
            zeroed = slimmed
        else:
            export_onnx(zeroed, input_shape, tmp)
    if fmt == "onnx":
        report["onnx_max_error"] = onnx_max_error(zeroed, output, torch.rand(4, *input_shape))
    report["bytes"] = _file_size(output)
    report["ratio_to_dense_file"] = report["bytes"] / report["dense_bytes"]
    return report


def _torch_bytes(state: dict[str, torch.Tensor]) -> bytes:
    """torch.save into memory: its size is the dense file's, and a plain write of it reports a full disk clearly."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def export_checkpoint(checkpoint: str | Path, fmt: str, output: str | Path | None = None, slim: bool = False, *,
                      model: nn.Module | None = None, input_shape: Sequence[int] | None = None) -> dict[str, Any]:
    """Export a stage checkpoint as ``fmt`` (:func:`export_model`); ``output`` defaults to a file beside it.

    A checkpoint of a user-defined model (model spec name None) needs ``model``: an instance of its
    architecture, which the checkpoint's pruning and weights are loaded into. ``input_shape`` defaults
    to the one the checkpoint's model spec records.
    """
    _check_format(fmt)
    checkpoint = Path(checkpoint)
    if not checkpoint.exists():
        raise HarpError(f"checkpoint {checkpoint} does not exist; give a <stage>/final.pt from 'harp run'")
    spec = load_checkpoint(checkpoint)["model_spec"]
    if model is None and spec.get("name") is None:
        raise HarpError(f"{checkpoint} holds a user-defined model (not from the zoo); pass model=<an instance of "
                        "its architecture> (harp export: --model-factory module:function)")
    input_shape = input_shape if input_shape is not None else spec.get("input_shape")
    if input_shape is None:
        raise HarpError(f"{checkpoint} records no input shape; pass input_shape=(C, H, W)")
    pruned, _, _ = load_model(checkpoint, model=model)
    suffix = ".slim.onnx" if fmt == "onnx" and slim else SUFFIX[fmt]
    output = check_output_file(output or checkpoint.with_suffix(suffix), "export output")
    return export_model(pruned, fmt, output, input_shape, slim=slim, model_spec=spec, source=str(checkpoint))


__all__ = [
    "FORMATS", "CSRLinear", "ChannelSelect", "SlimPlan", "entropy_bytes", "export_checkpoint", "export_model",
    "export_onnx", "load_slim", "load_sparse", "onnx_max_error", "save_slim", "save_sparse", "slim_model",
    "sparsify_linears", "zeroed_model", "zeroed_state_dict",
]
