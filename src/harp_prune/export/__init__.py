"""Exports of pruned models that are really smaller: zeroed state dict, sparse checkpoint, slim model, ONNX.

``export_checkpoint(path, fmt)`` turns a stage checkpoint (``<stage>/final.pt``) into one of them and
reports sizes; it is what ``harp export`` calls. See docs/export.md.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from harp_prune.errors import HarpError
from harp_prune.export.csr import CSRLinear, sparsify_linears
from harp_prune.export.onnx import export_onnx, onnx_max_error
from harp_prune.export.slim import ChannelSelect, SlimPlan, load_slim, save_slim, slim_model
from harp_prune.export.sparse import entropy_bytes, load_sparse, save_sparse
from harp_prune.export.zeroed import zeroed_model, zeroed_state_dict
from harp_prune.files import atomic_output, check_output_file

FORMATS = ("zeroed", "sparse", "slim", "onnx")
SUFFIX = {"zeroed": ".zeroed.pt", "sparse": ".sparse.safetensors", "slim": ".slim.pt", "onnx": ".onnx"}


def _file_size(path: Path) -> int:
    return path.stat().st_size


def _torch_bytes(state: dict[str, torch.Tensor]) -> bytes:
    """torch.save into memory: its size is the dense file's, and a plain write of it reports a full disk clearly."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def export_checkpoint(checkpoint: str | Path, fmt: str, output: str | Path | None = None,
                      slim: bool = False) -> dict[str, Any]:
    """Export a stage checkpoint as ``fmt``; returns a JSON-ready report (paths, sizes, checks).

    ``slim`` (ONNX only) exports the channel-slimmed model instead of the zeroed one.
    """
    from harp_prune.pipeline import load_model

    if fmt not in FORMATS:
        raise HarpError(f"unknown export format '{fmt}'; choose one of {', '.join(FORMATS)}")
    checkpoint = Path(checkpoint)
    if not checkpoint.exists():
        raise HarpError(f"checkpoint {checkpoint} does not exist; give a <stage>/final.pt from 'harp run'")
    suffix = ".slim.onnx" if fmt == "onnx" and slim else SUFFIX[fmt]
    output = check_output_file(output or checkpoint.with_suffix(suffix), "export output")
    model, _, meta = load_model(checkpoint)
    model.eval()
    spec = meta["model_spec"]
    input_shape = tuple(spec["input_shape"])
    report: dict[str, Any] = {"checkpoint": str(checkpoint), "format": fmt, "output": str(output)}
    zeroed = zeroed_model(model)
    state = zeroed_state_dict(model)
    dense_file = _torch_bytes(state)  # the zeroed export itself, and the dense size every format is compared to
    report["dense_bytes"] = len(dense_file)
    with atomic_output(output) as tmp:  # a full disk or a failed export leaves no partial file
        if fmt == "zeroed":
            tmp.write_bytes(dense_file)
        elif fmt == "sparse":
            sizes = save_sparse(state, tmp, {"model_spec": spec, "source": str(checkpoint)})
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


__all__ = [
    "FORMATS", "CSRLinear", "ChannelSelect", "SlimPlan", "entropy_bytes", "export_checkpoint", "export_onnx",
    "load_slim", "load_sparse", "onnx_max_error", "save_slim", "save_sparse", "slim_model", "sparsify_linears",
    "zeroed_model", "zeroed_state_dict",
]
