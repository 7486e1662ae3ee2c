"""How the ``harp`` command reads its first word: a command, help, the version, or else ``run``'s flags."""

from __future__ import annotations

import pytest

from harp_prune import __version__, cli, pipeline


@pytest.fixture()
def runs(monkeypatch):
    """The configs ``pipeline.run`` would have been called with (nothing is trained)."""
    calls = []
    monkeypatch.setattr(pipeline, "run", lambda config, model, resume: calls.append((config, resume)))
    return calls


@pytest.mark.parametrize("argv", [[], ["--sparsity", "0.9"], ["--resume", "--prune-sparsity", "0.9"]])
def test_words_without_a_command_are_runs_flags(runs, argv, tmp_path):
    assert cli.main([*argv, "--out-dir", str(tmp_path)]) == 0
    (config, resume), = runs
    assert config.out_dir == str(tmp_path)
    assert config.prune.sparsity == (0.9 if argv else 0.99)
    assert resume == ("--resume" in argv)


def test_a_bare_flag_equals_the_same_flag_after_run(runs, tmp_path):
    flags = ["--sparsity", "0.9", "--out-dir", str(tmp_path), "--seed", "3"]
    assert cli.main(flags) == 0
    assert cli.main(["run", *flags]) == 0
    assert runs[0][0].to_dict() == runs[1][0].to_dict()


def test_an_unknown_flag_is_a_parser_error_not_a_run(runs, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["--sparsty", "0.9"])
    assert info.value.code == 2 and not runs
    assert "error: unrecognized arguments: --sparsty" in capsys.readouterr().err


def test_help_and_version_are_not_runs(runs, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out == f"harp-prune {__version__}\n"
    with pytest.raises(SystemExit) as info:
        cli.main(["--help"])
    assert info.value.code == 0 and "COMMAND" in capsys.readouterr().out
    assert not runs
