"""``--config NAME`` finds a preset shipped in the package; a file that exists always wins."""

from __future__ import annotations

import pytest

from harp_prune import cli
from harp_prune.errors import HarpError
from harp_prune.presets import PRESET_DIR, preset_names, resolve_config_file


def test_the_presets_ship_inside_the_package():
    assert PRESET_DIR.parent.name == "harp_prune"
    assert {"compare-small", "compare-medium", "compare-full", "paper-cifar10-vgg16", "paper-cifar10-resnet18",
            "paper-svhn-vgg16", "paper-svhn-resnet18"} <= set(preset_names())


@pytest.mark.parametrize("text", ["paper-cifar10-vgg16", "paper-cifar10-vgg16.yaml"])
def test_a_preset_is_found_by_name_with_or_without_yaml(text, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_config_file(text) == PRESET_DIR / "paper-cifar10-vgg16.yaml"


def test_an_existing_file_wins_over_a_preset(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "compare-small.yaml").write_text("seed: 7\n")
    assert resolve_config_file("compare-small.yaml").resolve() == tmp_path / "compare-small.yaml"
    config = cli.config_from_args(cli.build_parser().parse_args(["run", "--config", "compare-small.yaml"]))
    assert config.seed == 7
    assert resolve_config_file("compare-small") == PRESET_DIR / "compare-small.yaml"


def test_a_directory_named_like_a_preset_does_not_hide_it(tmp_path, monkeypatch):
    """The compare presets write to runs/<name>: from inside runs/, --config <name> still means the preset."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "compare-small").mkdir()
    assert resolve_config_file("compare-small") == PRESET_DIR / "compare-small.yaml"
    (tmp_path / "my-settings").mkdir()
    with pytest.raises(HarpError, match=r"--config my-settings is a directory, not a config file; .*compare-small"):
        resolve_config_file("my-settings")


@pytest.mark.parametrize("text", ["paper-cifar10-vgg", "configs/paper-cifar10-vgg16.yaml"])
def test_neither_file_nor_preset_is_one_line_listing_the_presets(text, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(HarpError) as info:
        resolve_config_file(text)
    message = str(info.value)
    assert "\n" not in message and f"--config {text}: no such file" in message
    assert all(name in message for name in preset_names())


def test_cli_runs_a_preset_by_name(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    config = cli.config_from_args(cli.build_parser().parse_args(["compare", "--config", "compare-small"]))
    assert config.out_dir == "runs/compare-small" and config.provenance["out_dir"] == "compare-small"
    assert cli.main(["run", "--config", "compare-smal"]) == 2
    assert capsys.readouterr().err.startswith("harp: error: --config compare-smal: no such file")
