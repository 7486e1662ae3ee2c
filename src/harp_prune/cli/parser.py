"""The ``harp`` command's parser, built from the flag table (``table.py``), so that help needs no torch.

Every config key is a flag (``prune.sparsity`` is ``--prune-sparsity``). Only flags the user gave count as
set: the parser adds no values of its own. Every command accepts every key (one flag list serves a
script's commands, as one YAML file does), but its help lists only those it uses, and of the components'
options only those of the components chosen on the command line (``harp run --method frontier --help``)
or by default, each with that component's default and meaning; an option that other components take too
also states their defaults.
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from collections.abc import Iterable, Sequence
from typing import Any, NoReturn

from harp_prune.cli.export import add_export_arguments
from harp_prune.cli.table import flag_table
from harp_prune.presets import preset_names
from harp_prune.registry import flag_name
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

# the config sections whose flags each command lists (a YAML file may still hold every section)
_RUN_SECTIONS = ("run", "data", "attack")
COMMAND_SECTIONS = {
    "run": (*_RUN_SECTIONS, "pretrain", "prune", "finetune", "evaluate"),
    "pretrain": (*_RUN_SECTIONS, "pretrain"),
    "prune": (*_RUN_SECTIONS, "pretrain", "prune"),
    "finetune": (*_RUN_SECTIONS, "pretrain", "prune", "finetune"),
    "evaluate": (*_RUN_SECTIONS, "evaluate"),
    "compare": (*_RUN_SECTIONS, "pretrain", "prune", "finetune", "evaluate", "compare"),
}
# keys of those sections a command has no use for: run evaluates the model it trained; evaluate trains
# nothing; compare prunes with each of compare.methods from its own pre-trained model and evaluates its cells
UNUSED = {
    "run": {"evaluate.checkpoint"},
    "evaluate": {"select_on", "tensorboard", "amp", "channels_last", "compile", "sync_bn", "data.val_fraction",
                 "data.batch_size", "data.train_examples", "data.augment", "attack.steps"},
    "compare": {"prune.method", "prune.source", "finetune.source", "evaluate.checkpoint"},
}
RESUMABLE = ("run", "pretrain", "prune", "finetune")  # compare always resumes from its caches
SECTION_TITLES = {
    "run": "run settings", "data": "data settings", "attack": "threat model of training and validation",
    "pretrain": "stage 1: pre-training", "prune": "stage 2: pruning", "finetune": "stage 3: fine-tuning",
    "evaluate": "evaluation", "compare": "harp compare",
}


def _section(key: str) -> str:
    return key.split(".")[0] if "." in key else "run"


def _shown(value: Any) -> str:
    return "none" if value is None else repr(value) if value == "" else str(value)


class HarpParser(argparse.ArgumentParser):
    """argparse with a suggestion for a mistyped flag or choice (Python 3.11 has no ``suggest_on_error``)."""

    def error(self, message: str) -> NoReturn:
        super().error(message + "".join(f"\n  {hint}" for hint in self._suggestions(message)))

    def _suggestions(self, message: str) -> list[str]:
        """``did you mean`` lines for the unrecognised flags or the invalid choice ``message`` reports."""
        choice = re.search(r"invalid choice: '(.*?)' \(choose from (.*)\)", message)
        if choice:
            names = [name.strip("'") for name in choice.group(2).split(", ")]
            close = difflib.get_close_matches(choice.group(1), names, n=1)
            return [f"did you mean {close[0]}?"] if close else []
        prefix = "unrecognized arguments: "
        if not message.startswith(prefix):
            return []
        known = [option for action in self._all_actions() for option in action.option_strings]
        hints = []
        for word in message[len(prefix):].split():
            close = difflib.get_close_matches(word.split("=")[0], known, n=1) if word.startswith("--") else []
            if close:
                hints.append(f"{word}: did you mean {close[0]}?")
        return hints

    def _all_actions(self) -> Iterable[argparse.Action]:
        """This parser's options and those of its commands, deprecated spellings left out."""
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    yield from (a for a in sub._actions if not isinstance(a, _Deprecated))
            elif not isinstance(action, _Deprecated):
                yield action


class _Deprecated(argparse.Action):
    """A renamed option's former flag: sets the option and says, in one line, what it is called now."""

    def __init__(self, option_strings: list[str], dest: str, current: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, **kwargs)
        self.current = current

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        print(f"harp: note: {option_string} is deprecated; use {self.current}", file=sys.stderr)
        setattr(namespace, self.dest, values)


def _given(words: Sequence[str], flags: dict[str, str]) -> dict[str, str]:
    """The values ``words`` give the keys of ``flags`` (flag -> key), read before parsing (the last wins)."""
    given = {}
    for index, word in enumerate(words):
        flag, equals, value = word.partition("=")
        if flag in flags:
            if not equals:
                if index + 1 >= len(words):
                    continue
                value = words[index + 1]
            given[flags[flag]] = value
    return given


def _component_names(text: str, names: Iterable[str]) -> list[str]:
    """The components a chooser's value names: ``hydra:lamp,harp`` -> hydra, harp; ``pgd20,apgd-ce`` ->
    pgd, apgd-ce (a step count or a budget after the name is not part of it)."""
    known, found = set(names), []
    for part in text.split(","):
        word = part.split(":")[0].strip().lower()
        name = word if word in known else word.rstrip("0123456789")
        if name in known and name not in found:
            found.append(name)
    return found


def listed_components(table: dict[str, Any], command: str, words: Sequence[str]) -> dict[str, list[str]]:
    """Per option bag, the components whose options ``command``'s help lists: named by the first of the bag's
    choosers given in ``words``, else by the first default of a chooser the command uses, else the bag's
    default (the default PGD evaluation)."""
    keys = table["keys"]
    flags = {flag: key for bag in table["bags"].values() for key in bag["choosers"]
             for flag in (flag_name(key), *ALIASES.get(key, []))}
    given = _given(words, flags)
    chosen = {}
    for name, bag in table["bags"].items():
        names = bag["components"]
        values = [given[key] for key in bag["choosers"] if key in given]
        values += [keys[key]["variants"][0]["default"] for key in bag["choosers"] if uses(command, key)]
        found = next((c for c in (_component_names(v, names) for v in values if v is not None) if c), None)
        chosen[name] = found or bag["default"]
    return chosen


def uses(command: str, key: str) -> bool:
    return _section(key) in COMMAND_SECTIONS[command] and key not in UNUSED.get(command, ())


def _key_help(entry: dict[str, Any], chosen: list[str]) -> str:
    """What the key means and its default for the chosen component; the defaults of the others that take it."""
    variants = entry["variants"]
    main = next((v for v in variants if set(v["owners"]) & set(chosen)), variants[0])
    others = "".join(f"; {', '.join(v['owners'])}: {_shown(v['default'])}" for v in variants if v is not main)
    # argparse fills in %(choices)s from the action's choices, which it also checks
    choices = "; one of %(choices)s" if entry["choices"] else ""
    return f"{main['help'].replace('%', '%%')} (default {_shown(main['default'])}{others}{choices})"


def _listed_components(table: dict[str, Any], chosen: dict[str, list[str]], section: str) -> str | None:
    """The group's description: whose options it lists, and how to list another component's."""
    lines = []
    for bag, names in chosen.items():
        if bag.split(".")[0] == section:
            chooser = table["bags"][bag]["choosers"][0]
            flag = ALIASES.get(chooser, [flag_name(chooser)])[0]
            kind = table["bags"][bag]["kind"]
            lines.append(f"the options of {kind} {', '.join(names)} are listed ({flag} NAME --help: another {kind}'s)")
    return "; ".join(lines) or None


def add_config_flags(parser: argparse.ArgumentParser, command: str, words: Sequence[str]) -> None:
    """One flag per config key; the help lists those ``command`` uses (``words`` choose the components)."""
    table = flag_table()
    parser.add_argument("--config", metavar="YAML", help="config file or the name of a shipped preset ("
                        f"{', '.join(preset_names())}); flags override its values")
    if command in RESUMABLE:
        parser.add_argument("--resume", action="store_true",
                            help="skip finished stages and continue an interrupted one from its last finished epoch")
    chosen = listed_components(table, command, words)
    groups = {section: parser.add_argument_group(SECTION_TITLES[section], _listed_components(table, chosen, section))
              for section in COMMAND_SECTIONS[command]}
    for name, entry in table["keys"].items():
        owners = chosen.get(entry["bag"], [])
        listed = uses(command, name) and (entry["bag"] is None or any(
            set(v["owners"]) & set(owners) for v in entry["variants"]))
        group = groups[_section(name)] if listed else parser
        help_text = _key_help(entry, owners) if listed else argparse.SUPPRESS
        names = [flag_name(name), *ALIASES.get(name, [])]
        if entry["type"] == "bool":
            group.add_argument(*names, dest=name, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                               help=help_text)
        elif entry["choices"]:
            choices = [*entry["choices"], *(["none"] if entry["optional"] else [])]
            group.add_argument(*names, dest=name, choices=choices, metavar="NAME", default=argparse.SUPPRESS,
                               help=help_text)
        else:
            group.add_argument(*names, dest=name, metavar=entry["type"].upper(), default=argparse.SUPPRESS,
                               help=help_text)
    for old, new in table["renamed"].items():
        parser.add_argument(flag_name(old), dest=new, action=_Deprecated, current=flag_name(new),
                            default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def with_command(words: Sequence[str]) -> list[str]:
    """The one rule for a bare `harp`: unless the first word names a command or asks for help or the version,
    the words are run's flags (`harp`, `harp --sparsity 0.9`)."""
    if not words or words[0] not in {*COMMANDS, "-h", "--help", "--version"}:
        return ["run", *words]
    return list(words)


def build_parser(words: Sequence[str] | None = None) -> HarpParser:
    """The parser of ``harp``; given the command line's ``words`` (after ``with_command``), only the command
    they name gets its flags (``harp --help`` reads no flag table) and they choose the components whose
    options its help lists."""
    parser = HarpParser(
        prog="harp", description="HARP: holistic adversarially robust pruning (Zhao & Wressnegger, ICLR 2023)")
    parser.add_argument("--version", action="version", version=f"harp-prune {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        # a config command's usage line would repeat its hundred flags; its help lists them
        usage = f"harp {name} [options]" if name in COMMAND_SECTIONS else None
        command = sub.add_parser(name, help=help_text, description=help_text, usage=usage)
        if words is not None and (not words or words[0] != name):
            continue
        if name == "export":
            add_export_arguments(command, flag_table()["export_formats"])
        elif name == "report":
            command.add_argument("directory", metavar="OUT_DIR", help="the out_dir of a 'harp run' (results.json, "
                                 "metrics.jsonl; also while it trains) or of a 'harp compare' (compare.json)")
        else:
            add_config_flags(command, name, words or [])
            if name == "run":
                command.add_argument("--model-factory", metavar="MODULE:FUNCTION",
                                     help="run your own architecture instead of the zoo's --model (also to --resume "
                                          "a run of hp.run(model=...)): a function that takes no arguments and "
                                          "returns an instance of it, e.g. mypkg.models:build (the current folder "
                                          "is importable); default none: the zoo's --model")
            if name == "evaluate":
                command.add_argument("--output", metavar="JSON", help="where to write the result (default: beside "
                                     "the checkpoint, as <checkpoint>.eval.json)")
    return parser
