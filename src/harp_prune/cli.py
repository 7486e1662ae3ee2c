"""The ``harp`` command: a thin layer that parses flags into a RunConfig and calls the pipeline.

Every config key is a flag (``prune.sparsity`` is ``--prune-sparsity``), generated from the dataclasses,
so the CLI and the library cannot drift apart. Only flags the user gave count as set: the CLI adds no
values of its own.
"""

from __future__ import annotations

import argparse
import sys
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harp_prune import distributed, pipeline
from harp_prune.compare import compare
from harp_prune.config import Key, build_config, config_keys, flag_name, read_yaml
from harp_prune.errors import HarpError
from harp_prune.files import check_output_file, describe_os_error
from harp_prune.models.factory import model_from_factory
from harp_prune.presets import preset_names, resolve_config_file
from harp_prune.report import write_report
from harp_prune.results import environment, write_json
from harp_prune.threads import apply_command_policy
from harp_prune.version import __version__

ALIASES = {"data.dataset": ["--dataset"], "prune.sparsity": ["--sparsity"], "prune.method": ["--method"]}

COMMANDS = {
    "run": "pre-train, prune, fine-tune and evaluate (with no flags: the embedded 10-minute default)",
    "pretrain": "stage 1: adversarial pre-training of the dense model",
    "prune": "stage 2: learn the masks (HARP) on the pre-trained model, weights frozen",
    "finetune": "stage 3: fine-tune the pruned model with its masks fixed",
    "evaluate": "natural and robust accuracy (PGD, AutoAttack, ...) and sparsity of a checkpoint, as JSON",
    "export": "write a pruned checkpoint as a zeroed state dict, a sparse file, a slim model or ONNX",
    "compare": "HARP vs baselines at several sparsities from one pre-trained model (cached, resumable)",
    "report": "one HTML page with plots (report.html) of a run's or a comparison's out dir (needs matplotlib)",
}


# the config sections whose flags each subcommand shows (a YAML file may still hold every section)
_RUN_SECTIONS = ("run", "data", "attack")
COMMAND_SECTIONS = {
    "run": (*_RUN_SECTIONS, "pretrain", "prune", "finetune", "evaluate"),
    "pretrain": (*_RUN_SECTIONS, "pretrain"),
    "prune": (*_RUN_SECTIONS, "pretrain", "prune"),
    "finetune": (*_RUN_SECTIONS, "pretrain", "prune", "finetune"),
    "evaluate": (*_RUN_SECTIONS, "evaluate"),
    "compare": (*_RUN_SECTIONS, "pretrain", "prune", "finetune", "evaluate", "compare"),
}
SECTION_TITLES = {
    "run": "run settings", "data": "data settings", "attack": "threat model of training and validation",
    "pretrain": "stage 1: pre-training", "prune": "stage 2: pruning (the method's options are marked 'taken by')",
    "finetune": "stage 3: fine-tuning", "evaluate": "evaluation (attack options are marked 'taken by')",
    "compare": "harp compare",
}


def _type_name(tp: Any) -> str:
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    return getattr(args[0] if args else tp, "__name__", str(tp))


def _help(key: Key) -> str:
    """The flag's help: what it means, its default and choices, which components take it; % escaped."""
    return key.help().replace("%", "%%")


def add_config_flags(parser: argparse.ArgumentParser, command: str) -> None:
    """One flag per config key of the command's sections (``prune.sparsity`` is ``--prune-sparsity``)."""
    parser.add_argument("--config", metavar="YAML", help="config file or the name of a shipped preset ("
                        f"{', '.join(preset_names())}); flags override its values")
    parser.add_argument("--resume", action="store_true",
                        help="skip finished stages and continue an interrupted one from its last finished epoch")
    shown = COMMAND_SECTIONS[command]
    groups: dict[str, argparse._ArgumentGroup] = {}
    for name, key in config_keys().items():
        section = name.split(".")[0] if "." in name else "run"
        group = groups.setdefault(section, parser.add_argument_group(SECTION_TITLES[section]))
        names = [flag_name(name), *ALIASES.get(name, [])]
        # every command accepts every key (one flag list serves a script's commands, as one YAML file does);
        # its help shows those of its own sections
        help_text = _help(key) if section in shown else argparse.SUPPRESS
        if key.type is bool:
            group.add_argument(*names, dest=name, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                               help=help_text)
        else:
            group.add_argument(*names, dest=name, metavar=_type_name(key.type).upper(), default=argparse.SUPPRESS,
                               help=help_text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="harp", description="HARP: holistic adversarially robust pruning (Zhao & Wressnegger, ICLR 2023)")
    parser.add_argument("--version", action="version", version=f"harp-prune {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        if name == "export":
            from harp_prune.export.cli import add_export_arguments

            add_export_arguments(command)
            continue
        if name == "report":
            command.add_argument("directory", metavar="OUT_DIR", help="the out_dir of a 'harp run' (results.json, "
                                 "metrics.jsonl; also while it trains) or of a 'harp compare' (compare.json)")
            continue
        add_config_flags(command, name)
        if name == "run":
            command.add_argument("--model-factory", metavar="MODULE:FUNCTION",
                                 help="run your own architecture instead of the zoo's --model (also to --resume a "
                                      "run of hp.run(model=...)): a function that takes no arguments and returns an "
                                      "instance of it, e.g. mypkg.models:build (the current folder is importable); "
                                      "default none: the zoo's --model")
        if name == "evaluate":
            command.add_argument("--output", metavar="JSON", help="where to write the result (default: beside it)")
    return parser


def config_from_args(args: argparse.Namespace):
    keys = set(config_keys())
    cli_values = {k: v for k, v in vars(args).items() if k in keys}
    file_values = read_yaml(resolve_config_file(args.config)) if args.config else {}
    return build_config(file_values, cli_values, file_name=args.config or "config file")


def with_command(words: list[str]) -> list[str]:
    """The one rule for a bare `harp`: unless the first word names a command or asks for help or the version,
    the words are run's flags (`harp`, `harp --sparsity 0.9`)."""
    if not words or words[0] not in {*COMMANDS, "-h", "--help", "--version"}:
        return ["run", *words]
    return words


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None:  # the command itself, not a call from Python: threads that do not spin (docs/performance.md)
        apply_command_policy()
    args = build_parser().parse_args(with_command(list(sys.argv[1:] if argv is None else argv)))
    command = args.command
    try:
        if command == "export":
            from harp_prune.export.cli import run_export

            return run_export(args)
        if command == "report":
            print(f"wrote {write_report(args.directory)}")
            return 0
        config = config_from_args(args)
        if command == "run":
            model = model_from_factory(args.model_factory) if args.model_factory else None
            pipeline.run(config, model=model, resume=args.resume)
        elif command == "compare":
            compare(config)  # always resumes from its caches
        elif command in ("pretrain", "prune", "finetune"):
            getattr(pipeline, command)(config, resume=args.resume)
        else:
            checkpoint = Path(config.evaluate.checkpoint or Path(config.out_dir) / "finetune" / "final.pt")
            output = check_output_file(args.output or checkpoint.with_suffix(".eval.json"), "--output file")
            result = pipeline.evaluate(config)
            # the evaluation's settings go with its result: <out_dir>/config.yaml stays the record of training
            provenance = {k: v for k, v in config.provenance.items() if v != "default"}
            write_json({**result, "checkpoint": str(checkpoint), "config": config.to_dict(),
                                 "provenance": provenance, "environment": environment()}, output)
            robust = ", ".join(f"{k} {100 * v:.2f}%" for k, v in result["robust_acc"].items())
            if result["worst_case_acc"] is not None and len(result["robust_acc"]) > 1:
                robust += f", worst case {100 * result['worst_case_acc']:.2f}%"
            if result["flags"]:
                robust += f", {len(result['flags'])} warning(s) (see 'flags')"
            if distributed.is_main():
                print(f"natural {100 * result['natural_acc']:.2f}%, {robust}, "
                      f"sparsity {100 * result['sparsity']:.3f}% on {result['examples']} test images -> {output}")
    except HarpError as error:
        print(f"harp: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # the last resort for file problems no check caught; real bugs keep their traceback
        print(f"harp: error: {describe_os_error(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("harp: interrupted; rerun the same command with --resume to continue", file=sys.stderr)
        return 130
    finally:
        distributed.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
