"""The ``harp`` command: a thin layer that parses flags into a RunConfig and calls the pipeline.

The flags are generated from the config's dataclasses and the components' declared options
(``parser.py``), so the CLI and the library cannot drift apart. The command imports torch only once it has
parsed its flags: ``--help`` answers without it, and the thread policy is set before it loads
(``harp_prune.threads``).
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harp_prune.cli.parser import ALIASES, COMMANDS, build_parser, with_command
from harp_prune.errors import HarpError
from harp_prune.files import check_output_file, describe_os_error
from harp_prune.threads import cap_torch_threads, set_wait_policy

if TYPE_CHECKING:
    from harp_prune.config import RunConfig

__all__ = ["ALIASES", "COMMANDS", "build_parser", "config_from_args", "main", "with_command"]


def config_from_args(args: argparse.Namespace) -> RunConfig:
    from harp_prune.config import build_config, config_keys, read_yaml
    from harp_prune.presets import resolve_config_file

    keys = set(config_keys())
    cli_values = {k: v for k, v in vars(args).items() if k in keys}
    file_values = read_yaml(resolve_config_file(args.config)) if args.config else {}
    return build_config(file_values, cli_values, file_name=args.config or "config file")


_SHOW_WARNING = warnings.showwarning


def _deprecation_in_one_line(message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any) -> None:
    """A deprecation (an old config key in a YAML file) as one line, as the command's other notes; other
    warnings keep where they came from."""
    if issubclass(category, FutureWarning | DeprecationWarning):
        print(f"harp: note: {message}", file=sys.stderr)
    else:
        _SHOW_WARNING(message, category, *args, **kwargs)


def _evaluate(config: RunConfig, output: str | None) -> None:
    from harp_prune import distributed, pipeline
    from harp_prune.results import environment, write_json


    checkpoint = Path(config.evaluate.checkpoint or Path(config.out_dir) / "finetune" / "final.pt")
    output_path = check_output_file(output or checkpoint.with_suffix(".eval.json"), "--output file")
    result = pipeline.evaluate(config)
    # the evaluation's settings go with its result: <out_dir>/config.yaml stays the record of training
    provenance = {k: v for k, v in config.provenance.items() if v != "default"}
    write_json({**result, "checkpoint": str(checkpoint), "config": config.to_dict(), "provenance": provenance,
                "environment": environment()}, output_path)
    robust = ", ".join(f"{k} {100 * v:.2f}%" for k, v in result["robust_acc"].items())
    if result["worst_case_acc"] is not None and len(result["robust_acc"]) > 1:
        robust += f", worst case {100 * result['worst_case_acc']:.2f}%"
    if result["flags"]:
        robust += f", {len(result['flags'])} warning(s) (see 'flags')"
    if distributed.is_main():
        print(f"natural {100 * result['natural_acc']:.2f}%, {robust}, "
              f"sparsity {100 * result['sparsity']:.3f}% on {result['examples']} test images -> {output_path}")


def _dispatch(args: argparse.Namespace) -> int:
    """Run the parsed command (this is where torch is imported)."""
    command = args.command
    if command == "export":
        from harp_prune.cli.export import run_export

        return run_export(args)
    if command == "report":
        from harp_prune.report import write_report

        print(f"wrote {write_report(args.directory)}")
        return 0
    from harp_prune import distributed, pipeline

    try:
        config = config_from_args(args)
        if command == "run":
            from harp_prune.models.factory import model_from_factory

            model = model_from_factory(args.model_factory) if args.model_factory else None
            pipeline.run(config, model=model, resume=args.resume)
        elif command == "compare":
            from harp_prune.compare import compare

            compare(config)  # always resumes from its caches
        elif command in ("pretrain", "prune", "finetune"):
            getattr(pipeline, command)(config, resume=args.resume)
        else:
            _evaluate(config, args.output)
    finally:
        distributed.cleanup()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    command_line = argv is None  # the command itself, not a call from Python: its thread policy and messages
    if command_line:
        set_wait_policy(os.environ)  # before anything imports torch (docs/performance.md)
        warnings.showwarning = _deprecation_in_one_line
    words = with_command(list(sys.argv[1:] if argv is None else argv))
    args = build_parser(words).parse_args(words)
    try:
        if command_line:
            cap_torch_threads()
        return _dispatch(args)
    except HarpError as error:
        print(f"harp: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # the last resort for file problems no check caught; real bugs keep their traceback
        print(f"harp: error: {describe_os_error(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("harp: interrupted; rerun the same command with --resume to continue", file=sys.stderr)
        return 130
