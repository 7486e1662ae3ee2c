"""``harp export``: flags and the printed summary (the work is in :func:`harp_prune.export.export_checkpoint`;
imported when the command runs, so that its help needs no torch)."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from harp_prune.errors import HarpError

if TYPE_CHECKING:
    from torch import nn


def add_export_arguments(parser: argparse.ArgumentParser, formats: Sequence[str]) -> None:
    parser.add_argument("checkpoint", help="a stage checkpoint, e.g. runs/default/finetune/final.pt")
    parser.add_argument("--format", choices=formats, default="sparse",
                        help="zeroed: plain state dict with pruned weights zero; sparse: kept values and positions "
                             "(safetensors); slim: pruned channels (channel masks) or unread input channels "
                             "(weight masks) removed; onnx (default sparse)")
    parser.add_argument("--output", metavar="PATH", help="output file (default: beside the checkpoint)")
    parser.add_argument("--slim", action="store_true", help="with --format onnx: export the slimmed model")
    parser.add_argument("--json", action="store_true", help="print the full report as JSON")
    parser.add_argument("--model-factory", metavar="MODULE:FUNCTION",
                        help="for a checkpoint of your own (non-zoo) model: a function that takes no arguments and "
                             "returns an instance of its architecture, e.g. mypkg.models:build (the current "
                             "folder is importable)")


def model_from_factory(path: str) -> nn.Module:
    """Call the zero-argument function named by ``module:function`` and check that it returns a model."""
    module_name, _, function_name = path.partition(":")
    if not module_name or not function_name:
        raise HarpError(f"--model-factory '{path}' is not module:function; write it like mypkg.models:build")
    if os.getcwd() not in sys.path:  # as 'python -m' does, so a module beside the user's files is found
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise HarpError(f"--model-factory: cannot import '{module_name}' ({exc}); run from the folder that holds "
                        "it or add that folder to PYTHONPATH") from exc
    factory = getattr(module, function_name, None)
    if not callable(factory):
        raise HarpError(f"--model-factory: '{module_name}' has no function '{function_name}'; name a function "
                        "that returns the model")
    from torch import nn

    model = factory()
    if not isinstance(model, nn.Module):
        raise HarpError(f"--model-factory: {path}() returned a {type(model).__name__}, not a torch nn.Module; "
                        "return an instance of the model's architecture")
    return model


def _mb(n: float) -> str:
    return f"{n / 1e6:.3f} MB"


def run_export(args: argparse.Namespace) -> int:
    from harp_prune.export import export_checkpoint

    model = model_from_factory(args.model_factory) if args.model_factory else None
    report = export_checkpoint(args.checkpoint, args.format, args.output, slim=args.slim, model=model)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    line = (f"{report['format']} -> {report['output']}: {_mb(report['bytes'])}, "
            f"{report['ratio_to_dense_file']:.4f} x the dense file ({_mb(report['dense_bytes'])})")
    if "entropy_total_bytes" in report:
        line += (f"; payload {_mb(report['stored_bytes'])} = values {_mb(report['value_bytes'])} + positions "
                 f"{_mb(report['position_bytes'])}, {report['ratio_to_entropy']:.3f} x the entropy limit "
                 f"({_mb(report['entropy_total_bytes'])})")
    if "slim_params" in report:
        line += (f"; {report['slim_params']:,} of {report['dense_params']:,} parameters left, "
                 f"{report['gathers']} layer(s) gather their input")
    if "onnx_max_error" in report:
        line += f"; onnxruntime max |diff| {report['onnx_max_error']:.2e}"
    print(line)
    return 0
