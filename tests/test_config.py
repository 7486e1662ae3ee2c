"""Config precedence: defaults < YAML < command line; data-set defaults only fill what nobody set."""

import pytest
import yaml

from harp_prune.cli import build_parser, config_from_args
from harp_prune.config import build_config, read_yaml, save_config
from harp_prune.errors import HarpError
from harp_prune.pipeline import method_options


def _cli(argv):
    return config_from_args(build_parser().parse_args(argv))


def test_precedence_defaults_file_command_line(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"seed": 3, "prune": {"sparsity": 0.9, "lr": 0.05}, "attack": {"eps": 0.2}}))
    config = _cli(["run", "--config", str(path), "--prune-sparsity", "0.999"])
    assert config.seed == 3 and config.provenance["seed"] == str(path)
    assert config.prune.sparsity == 0.999 and config.provenance["prune.sparsity"] == "command line"
    assert config.prune.lr == 0.05  # the official code forces 0.1 for pruning; we never override the user
    assert config.attack.eps == 0.2  # the data set's default (0.1) must not replace the user's value
    assert config.attack.step_size == 0.025 and config.provenance["attack.step_size"].startswith("default for")
    assert config.finetune.lr == 0.01 and config.provenance["finetune.lr"] == "default"


def test_aliases_and_booleans():
    config = _cli(["prune", "--sparsity", "0.95", "--no-progress", "--dataset", "fashion-mnist"])
    assert config.prune.sparsity == 0.95 and config.progress is False and config.data.dataset == "fashion-mnist"


@pytest.mark.parametrize("values, message", [
    ({"prune.sparsity": 1.0}, "prune.sparsity must be in [0, 1)"),
    ({"prune.sparsity": "lots"}, "must be float"),
    ({"sparsityy": 0.9}, "unknown config key"),
    ({"data.dataset": "mnist-on-mars"}, "unknown data set 'mnist-on-mars'"),
])
def test_bad_values_give_one_line_errors(values, message):
    with pytest.raises(HarpError, match=message.replace("[", r"\[").replace(")", r"\)")) as info:
        build_config(cli_values=values)
    assert "\n" not in str(info.value)


def test_effective_config_is_saved_with_provenance(tmp_path):
    config = build_config(cli_values={"prune.method": "harp-paper", "prune.gamma0": "0.05"})
    save_config(config, tmp_path / "config.yaml")
    text = (tmp_path / "config.yaml").read_text()
    assert "# prune.gamma0: command line" in text
    reloaded = build_config(read_yaml(tmp_path / "config.yaml"))
    assert reloaded.to_dict() == config.to_dict()


def test_bad_yaml_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("prune: [unclosed")
    with pytest.raises(HarpError, match="not valid YAML"):
        read_yaml(path)
    with pytest.raises(HarpError, match="cannot read config file"):
        read_yaml(tmp_path / "missing.yaml")


def test_gamma0_follows_the_data_set_unless_set():
    paper = {"prune.method": "harp-paper"}  # γ0 is the paper schedule's option
    assert method_options(build_config(paper)).gamma0 == 0.05  # embedded set: ~70 steps per epoch
    assert build_config(paper).provenance["prune.gamma0"] == "default for fashion-mnist-small"
    assert method_options(build_config(paper, cli_values={"data.dataset": "fashion-mnist"})).gamma0 == 0.01
    assert method_options(build_config({**paper, "prune.gamma0": 0.02})).gamma0 == 0.02
