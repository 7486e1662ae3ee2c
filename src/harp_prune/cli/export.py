"""``harp export``: flags and the printed summary (the work is in :func:`harp_prune.export.export_checkpoint`;
imported when the command runs, so that its help needs no torch)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence


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


def _mb(n: float) -> str:
    return f"{n / 1e6:.3f} MB"


def run_export(args: argparse.Namespace) -> int:
    from harp_prune.export import export_checkpoint
    from harp_prune.models.factory import model_from_factory

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
