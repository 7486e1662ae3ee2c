"""One registry for every component: a component declares its options once, and config keys, flags, help and
validation follow. Each test registers a component here, in the test file alone, to show that nothing else
has to change."""

from __future__ import annotations

import argparse
import contextlib
from dataclasses import dataclass

import pytest

from harp_prune import pipeline
from harp_prune.attacks import ATTACKS, PGD, register_attack
from harp_prune.cli import build_parser
from harp_prune.config import RunConfig, build_config, config_keys, read_yaml
from harp_prune.errors import HarpError
from harp_prune.pruning import PRUNERS, LwmPruner
from harp_prune.registry import NoOptions, Registry, option
from harp_prune.training import OBJECTIVES, PGDAT


@contextlib.contextmanager
def registered(registry: Registry, cls: type):
    """``cls`` registered for the test only (registering at import would leak into other test files)."""
    registry.register_class(cls)
    try:
        yield
    finally:
        registry.remove(cls.name)


@dataclass(frozen=True)
class ShrinkOptions:
    shrink: float = option(0.5, "how hard to shrink")


class ShrinkPruner(LwmPruner):
    """Shrink: a test pruner with one option."""

    name = "shrink-test"
    Options = ShrinkOptions


@dataclass(frozen=True)
class NoisyOptions:
    noise: float = option(0.0, "label noise of the test objective")


class NoisyAT(PGDAT):
    """A test objective with one option."""

    name = "noisy-test"
    Options = NoisyOptions


def _help(command: str, *words: str) -> str:
    parser = build_parser([command, *words])
    text = next(a for a in parser._subparsers._actions if a.choices)._name_parser_map[command].format_help()
    return " ".join(text.split())


def test_a_new_pruner_with_an_option_is_one_class():
    with registered(PRUNERS, ShrinkPruner):
        assert config_keys()["prune.shrink"].owners == ("shrink-test",)
        config = build_config(cli_values={"prune.method": "shrink-test", "prune.shrink": "0.25"})
        pruner = pipeline.make_pruner(config)
        assert isinstance(pruner, ShrinkPruner) and pruner.options == ShrinkOptions(shrink=0.25)
        assert "--prune-shrink" not in _help("prune")  # the help lists the chosen method's options
        shrink_help = _help("prune", "--method", "shrink-test")
        assert "--prune-shrink" in shrink_help and "how hard to shrink (default 0.5" in shrink_help
        with pytest.raises(HarpError, match=r"pruning method 'harp' does not take prune\.shrink \(set in "
                                            r"command line\); it takes: .*rate_reach"):
            pipeline.make_pruner(build_config(cli_values={"prune.shrink": 0.3}))
    assert "shrink-test" not in PRUNERS and "prune.shrink" not in config_keys()


def test_a_new_objective_with_an_option_is_one_class():
    with registered(OBJECTIVES, NoisyAT):
        config = build_config(pretrain={"objective": "noisy-test", "noise": 0.1})
        objective = pipeline.objective_for(config, "pretrain")
        assert isinstance(objective, NoisyAT) and objective.options.noise == 0.1
        with pytest.raises(HarpError, match=r"objective 'pgd_at' does not take pretrain\.noise"):
            build_config(pretrain={"noise": 0.1})


def test_a_new_attack_with_an_option_is_one_call():
    @dataclass(frozen=True)
    class StrongOptions:
        strength: int = option(3, "how strong")

    register_attack("strong", lambda setting, options: PGD(setting.eps, steps=options.strength), StrongOptions)
    try:
        config = build_config(evaluate={"attacks": "strong,pgd5", "strength": 7})
        attacks = pipeline.evaluation_attacks(config)
        assert attacks["strong"].steps == 7 and attacks["pgd5"].steps == 5
        with pytest.raises(HarpError, match=r"attack 'pgd' does not take evaluate\.strength"):
            build_config(evaluate={"attacks": "pgd5", "strength": 7})
    finally:
        ATTACKS.remove("strong")


def test_options_are_typed_and_checked_against_their_choices():
    config = build_config(prune={"method": "one-shot", "importance": "random", "layer_budget": "lamp"})
    pruner = pipeline.make_pruner(config)
    assert (pruner.importance, pruner.layer_budget) == ("random", "lamp")
    with pytest.raises(HarpError, match=r"unknown importance 'biggest'; choose one of magnitude, random, "
                                        r"scaled-magnitude"):
        build_config(prune={"method": "one-shot", "importance": "biggest"})
    with pytest.raises(HarpError, match=r"prune.gamma0 must be >= 0"):
        pipeline.make_pruner(build_config(prune={"method": "harp-paper", "gamma0": -1}))
    with pytest.raises(HarpError, match=r"config key 'prune.gamma0' must be float, got 'fast'"):
        build_config(prune={"gamma0": "fast"})
    with pytest.raises(HarpError, match=r"unknown config key 'prune.gama0' in Python \(did you mean prune.gamma0"):
        build_config(prune={"gama0": 0.1})


def test_yaml_and_saved_configs_hold_options_flat_in_their_section(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("prune:\n  method: hydra\n  layer_budget: erk\npretrain:\n  objective: trades\n  beta: 3\n")
    config = build_config(read_yaml(path), file_name=str(path))
    assert config.prune.method_options == {"layer_budget": "erk"} and config.pretrain.objective_options == {"beta": 3.0}
    assert config.to_dict()["prune"]["layer_budget"] == "erk" and config.to_dict()["pretrain"]["beta"] == 3.0
    assert config.provenance["prune.layer_budget"] == str(path)


def test_the_data_set_default_goes_only_to_methods_that_take_it():
    paper = {"method": "harp-paper"}  # γ0 is the paper schedule's; harp (the default) adapts γ itself
    assert build_config(prune=paper).prune.method_options == {"gamma0": 0.05}  # embedded data: ~70 steps per epoch
    assert build_config().prune.method_options == {}
    assert build_config(prune={"method": "hydra"}).prune.method_options == {}
    assert build_config(prune=paper, data={"dataset": "fashion-mnist"}).prune.method_options == {}  # its own 0.01
    assert PRUNERS.options("harp-paper", {}).gamma0 == 0.01


def test_every_flag_says_what_it_means_and_its_default():
    for command in ("run", "prune", "evaluate", "compare"):
        parser = build_parser()
        sub = next(a for a in parser._subparsers._actions if a.choices)._name_parser_map[command]
        for action in sub._actions:
            if action.option_strings and action.dest not in ("help", "config", "resume", "version") \
                    and action.help != argparse.SUPPRESS:
                assert action.help and "default" in action.help, (command, action.dest)
    assert "one of apgd-ce, apgd-dlr, autoattack" not in _help("evaluate")  # attacks are listed by name:
    assert "fgsm, pgd<K>, cw<K>, apgd-ce, apgd-dlr, autoattack" in _help("evaluate")
    assert "--prune-gamma0" not in _help("evaluate") and "--compare-methods" not in _help("run")


def test_registry_errors_name_the_kind_and_the_choices():
    registry: Registry[int] = Registry("colour")
    registry.register("red", lambda options: 1)
    with pytest.raises(HarpError, match="unknown colour 'blue'; choose one of red"):
        registry.get("blue")
    with pytest.raises(HarpError, match="colour 'red' does not take option 'shade'; it takes: no options"):
        registry.create("red", shade=2)
    assert registry.create("red") == 1 and registry.get("red").options is NoOptions


def test_a_file_dropped_into_a_package_registers_itself(tmp_path, monkeypatch):
    """What makes 'one file' true: a package imports every module it holds (harp_prune.pruning, attacks,
    training, models and data do), so a module that registers a component needs no import line elsewhere."""
    package = tmp_path / "plugins_for_test"
    package.mkdir()
    (package / "__init__.py").write_text("from harp_prune.registry import import_submodules\n"
                                         "import_submodules(__name__, __path__)\n")
    (package / "extra_model.py").write_text("from harp_prune.models import register_model\n"
                                            "register_model('dropped-in-test', lambda c, n, s: None, 'a test model')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    from harp_prune.models import MODELS

    try:
        __import__("plugins_for_test")
        assert MODELS.get("dropped-in-test").summary == "a test model"
    finally:
        MODELS.remove("dropped-in-test")


def test_a_config_changed_in_python_gets_the_defaults_of_what_it_chooses_now(tmp_path):
    """The embedded data's γ0 default went to harp-paper; switching to HYDRA in Python must not leave it behind as
    a setting HYDRA refuses, and a bare RunConfig() gets its data set's eps and, for harp-paper, its γ0."""
    config = build_config(out_dir=str(tmp_path / "a"), prune={"method": "harp-paper"})
    config.prune.method = "hydra"
    pipeline.prepare(config)
    assert config.prune.method_options == {} and isinstance(pipeline.make_pruner(config), PRUNERS.get("hydra").factory)
    bare = RunConfig(out_dir=str(tmp_path / "b"))
    bare.prune.method = "harp-paper"
    pipeline.prepare(bare)
    assert (bare.attack.eps, bare.prune.method_options) == (0.1, {"gamma0": 0.05})
