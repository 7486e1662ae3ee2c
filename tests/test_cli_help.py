"""The command's help: answered without torch, per component, with each component's own defaults; choices
checked by argparse, a mistyped flag answered with a suggestion, renamed options still accepted."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import warnings

import pytest

from harp_prune.cli import COMMANDS, build_parser, config_from_args, main
from harp_prune.cli.table import cache_file, source_fingerprint
from harp_prune.config import OPTION_BAGS, RunConfig, config_keys, flag_name, get, read_yaml


def _harp(*words: str, cache: os.PathLike[str]) -> subprocess.CompletedProcess:
    """``python -X importtime -m harp_prune WORDS`` with its flag table cached under ``cache``."""
    return subprocess.run([sys.executable, "-X", "importtime", "-m", "harp_prune", *words], capture_output=True,
                          text=True, timeout=300, check=False, env={**os.environ, "HARP_CACHE_DIR": str(cache)})


def _imported(done: subprocess.CompletedProcess) -> set[str]:
    """The modules a process imported, from its ``-X importtime`` lines (``... | <indent>module``)."""
    return {line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}


@pytest.fixture(scope="module")
def warm_cache(tmp_path_factory):
    """A flag-table cache written by a first help (which describes the registries, importing torch)."""
    cache = tmp_path_factory.mktemp("cache")
    first = _harp("run", "--help", cache=cache)
    assert first.returncode == 0 and "torch" in _imported(first), first.stderr[-2000:]
    return cache


def test_the_top_level_help_and_version_never_import_torch(tmp_path):
    for words in (["--help"], ["--version"]):
        done = _harp(*words, cache=tmp_path)  # an empty cache: they need no flag table
        assert done.returncode == 0, done.stderr[-2000:]
        assert "harp_prune.cli" in _imported(done) and "torch" not in _imported(done)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_command_help_answers_without_importing_torch(command, warm_cache):
    done = _harp(command, "--help", cache=warm_cache)
    assert done.returncode == 0 and f"usage: harp {command}" in done.stdout, done.stderr[-2000:]
    assert "torch" not in _imported(done) and "numpy" not in _imported(done)


def test_the_cache_is_used_only_for_the_source_files_it_was_made_from(warm_cache, tmp_path, monkeypatch):
    monkeypatch.setenv("HARP_CACHE_DIR", str(warm_cache))
    cached = json.loads(cache_file().read_text())
    assert cached["fingerprint"] == source_fingerprint()
    cached["table"]["keys"]["prune.sparsity"]["variants"][0]["help"] = "SEEN IN THE CACHE"
    monkeypatch.setenv("HARP_CACHE_DIR", str(tmp_path))
    stale = cache_file()
    stale.write_text(json.dumps(cached))
    assert "SEEN IN THE CACHE" in _harp("run", "--help", cache=tmp_path).stdout
    stale.write_text(json.dumps({**cached, "fingerprint": "another source"}))
    again = _harp("run", "--help", cache=tmp_path)
    assert "SEEN IN THE CACHE" not in again.stdout and "torch" in _imported(again)
    assert json.loads(stale.read_text())["fingerprint"] == source_fingerprint()  # described anew and cached


def _subparser(words: list[str]):
    parser = build_parser(words)
    return next(a for a in parser._subparsers._actions if a.choices)._name_parser_map[words[0]]


def _listed(words: list[str]) -> dict[str, str]:
    """The listed flags of the command ``words`` name (``words`` choose the components), with their help."""
    sub = _subparser(words)
    formatter = sub._get_formatter()
    return {action.option_strings[0]: " ".join(formatter._expand_help(action).split()) for action in sub._actions
            if action.option_strings and action.help not in (None, "==SUPPRESS==")}


def _shown_default(help_text: str) -> str:
    return re.search(r"\(default (.*?)(?:;|\)$)", help_text).group(1)


def _text(value) -> str:
    return "none" if value is None else repr(value) if value == "" else str(value)


@pytest.mark.parametrize("bag", OPTION_BAGS, ids=lambda bag: f"{bag.section}.{bag.field}")
def test_every_component_lists_its_own_options_with_its_own_defaults(bag):
    """For every registered component (every pruning method, objective, attack): ``--<chooser> NAME --help``
    lists exactly the options it takes, each with the default its options dataclass declares."""
    command = "run"
    for component in bag.registry.components():
        listed = _listed([command, flag_name(bag.choosers[0]), component.name])
        bag_flags = {flag_name(f"{bag.section}.{name}") for name in
                     {n for c in bag.registry.components() for n in c.takes()}}
        mine = {flag_name(f"{bag.section}.{item.name}"): item for item in dataclasses.fields(component.options)}
        assert set(listed) & bag_flags == set(mine), component.name
        for flag, item in mine.items():
            assert _shown_default(listed[flag]) == _text(item.default), (component.name, flag)
            assert item.metadata["help"].split(" (")[0][:40] in listed[flag], (component.name, flag)


def test_every_setting_shows_its_dataclass_default():
    defaults = RunConfig()
    for command, words in (("run", ["run"]), ("evaluate", ["evaluate"]), ("compare", ["compare"])):
        listed = _listed(words)
        for key, found in config_keys().items():
            if found.bag is None and flag_name(key) in listed:
                assert _shown_default(listed[flag_name(key)]) == _text(get(defaults, key)), (command, key)


def test_an_option_several_methods_take_states_each_ones_default():
    harp = _listed(["run"])  # the default method
    assert _shown_default(harp["--prune-alpha"]) == "0.1" and "frontier: 0.01" in harp["--prune-alpha"]
    assert "harp-channel: 0.99" in harp["--prune-init-density"]
    channel = _listed(["run", "--method", "harp-channel"])["--prune-init-density"]
    assert channel.startswith("the keep-ratio every group starts from") and _shown_default(channel) == "0.99"
    mart = _listed(["prune", "--pretrain-objective", "mart"])  # prune's objective falls back to pretrain's
    assert _shown_default(mart["--pretrain-beta"]) == "5.0" and "trades: 6.0" in mart["--pretrain-beta"]
    assert _shown_default(mart["--prune-beta"]) == "5.0"
    compared = _listed(["compare"])  # harp compare lists the options of every method of compare.methods
    assert "--prune-rate-reach" in compared and "--prune-boundary-width" not in compared
    assert "--prune-boundary-width" in _listed(["compare", "--compare-methods", "harp,frontier"])


def test_each_command_lists_only_what_it_uses():
    evaluate = _listed(["evaluate"])
    for flag in ("--resume", "--select-on", "--compile", "--tensorboard", "--prune-gamma0", "--data-batch-size"):
        assert flag not in evaluate
    assert {"--model", "--out-dir", "--evaluate-attacks", "--attack-eps", "--output"} <= set(evaluate)
    assert "--resume" not in _listed(["compare"]) and "--prune-method" not in _listed(["compare"])
    assert "--resume" in _listed(["prune"]) and "--compare-methods" not in _listed(["run"])
    assert "--evaluate-pgd-restarts" not in _listed(["evaluate", "--evaluate-attacks", "apgd-ce"])
    assert "--evaluate-apgd-restarts" in _listed(["evaluate", "--evaluate-attacks", "pgd20,apgd-ce"])


def test_no_option_is_named_after_a_method():
    """One word, one meaning: a method's name ("frontier") is not also the name of an option."""
    methods = {name for name in next(b for b in OPTION_BAGS if b.field == "method_options").registry}
    for key in config_keys():
        words = set(key.rpartition(".")[2].split("_"))
        assert not words & methods, key


def test_choices_are_argparse_choices(capsys):
    method = next(a for a in _subparser(["run"])._actions if "--prune-method" in a.option_strings)
    assert "harp" in method.choices and "frontier" in method.choices
    with pytest.raises(SystemExit) as info:
        main(["run", "--method", "hrap"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "invalid choice: 'hrap'" in err and "did you mean harp?" in err


def test_a_mistyped_flag_gets_a_suggestion(capsys):
    with pytest.raises(SystemExit) as info:
        main(["run", "--prune-sparsty", "0.9"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "--prune-sparsty: did you mean --prune-sparsity?" in err


def test_renamed_options_keep_their_old_flags_and_yaml_keys(tmp_path, capsys):
    words = ["run", "--method", "frontier", "--prune-frontier", "0.3"]
    config = config_from_args(build_parser(words).parse_args(words))
    assert config.prune.method_options["boundary_width"] == 0.3
    note = capsys.readouterr().err.strip()
    assert note == "harp: note: --prune-frontier is deprecated; use --prune-boundary-width"
    assert "--prune-frontier" not in _listed(["run", "--method", "frontier"])
    yaml_file = tmp_path / "old.yaml"
    yaml_file.write_text("prune:\n  rate_frontier: 0.1\n")
    with pytest.warns(FutureWarning, match="'prune.rate_frontier' .* is deprecated; use 'prune.rate_boundary_width'"):
        config = config_from_args(build_parser(["run"]).parse_args(["run", "--config", str(yaml_file)]))
    assert config.prune.method_options["rate_boundary_width"] == 0.1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the current names load without a note
        assert read_yaml(yaml_file) == {"prune.rate_frontier": 0.1}
