"""benchmarks/compare_paper_gpu.py without a GPU: its plan (``--dry-run``) and its AutoAttack selection, nothing
trained."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "compare_paper_gpu.py"


@pytest.fixture(scope="module")
def script() -> ModuleType:
    """The script as a module (the benchmarks folder is not a package), registered as one: its dataclasses
    look their module up."""
    spec = importlib.util.spec_from_file_location("compare_paper_gpu", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def flag(command: str, name: str) -> str:
    words = command.split()
    return words[words.index(name) + 1]


def test_the_dry_run_plans_the_full_width_models_on_the_gpu(script, tmp_path, capsys):
    script.main(["--dry-run", "--out-dir", str(tmp_path), "--data-root", "/nowhere"])  # no data needed to plan
    printed = capsys.readouterr().out
    compares = [line.strip() for line in printed.splitlines() if " -m harp_prune compare " in line]
    assert len(compares) == 2  # per model: the grid (S2AP cells only with --s2ap-rho)
    grids = {flag(c, "--model"): c for c in compares if "--prune-s2ap-rho" not in c}
    assert sorted(grids) == ["resnet18", "vgg16_bn"]
    for model, command in grids.items():
        assert flag(command, "--config") == "compare-resnet"
        assert flag(command, "--device") == "cuda"
        assert flag(command, "--out-dir") == str(tmp_path / model)
        assert flag(command, "--compare-methods") == "harp,harp-paper,hydra:lamp,frontier"
        assert flag(command, "--prune-epochs") == "10"
        assert flag(command, "--compare-sparsities") == "0.999,0.99"
        assert flag(command, "--compare-seeds") == "0,1"
        assert flag(command, "--data-root") == "/nowhere"
        assert flag(command, "--evaluate-pgd-steps") == "20"
        assert flag(command, "--data-test-examples") == "2000"
        assert "--amp" not in command.split()
    script.main(["--dry-run", "--out-dir", str(tmp_path), "--data-root", "/nowhere", "--s2ap-rho", "0.01"])
    printed = capsys.readouterr().out
    s2ap = [line.strip() for line in printed.splitlines() if " -m harp_prune compare " in line and "s2ap" in line]
    assert len(s2ap) == 2
    for command in s2ap:
        assert flag(command, "--prune-s2ap-rho") == "0.01"
        assert flag(command, "--compare-methods") == "harp,hydra:lamp,frontier"
        assert (flag(command, "--compare-sparsities"), flag(command, "--compare-seeds")) == ("0.999", "0")
        assert flag(command, "--out-dir") == str(tmp_path / f"{flag(command, '--model')}-s2ap-0.01")
    autoattack = [line.strip() for line in printed.splitlines() if "autoattack_cells.py" in line]
    assert len(autoattack) == 4  # per model and sparsity
    for command in autoattack:
        assert (flag(command, "--seeds"), flag(command, "--examples")) == ("0,1", "500")
    assert sum("the top 3 of harp,harp-paper,hydra-lamp,frontier" in line
               for line in printed.splitlines()) == 4


def test_options_change_the_plan(script, tmp_path, capsys):
    script.main(["--dry-run", "--out-dir", str(tmp_path), "--amp", "--s2ap-rho", "0", "--models", "resnet18",
                 "--train-examples", "4000", "--jobs", "7", "--pretrain-epochs", "30"])
    compares = [line.split() for line in capsys.readouterr().out.splitlines() if " -m harp_prune compare " in line]
    assert len(compares) == 1  # no S2AP cells with rho 0
    command = " ".join(compares[0])
    assert "--amp" in compares[0]
    assert (flag(command, "--data-train-examples"), flag(command, "--compare-jobs")) == ("4000", "7")
    assert flag(command, "--pretrain-epochs") == "30"


def test_the_tiny_mode_is_small_and_on_the_cpu(script, tmp_path, capsys):
    script.main(["--dry-run", "--tiny", "--out-dir", str(tmp_path)])
    printed = capsys.readouterr().out
    grids = [line for line in printed.splitlines() if " -m harp_prune compare " in line and "s2ap" not in line]
    for command in grids:
        assert flag(command, "--device") == "cpu"
        assert flag(command, "--model") in ("small_cnn", "small_cnn_wide")
        assert int(flag(command, "--data-train-examples")) <= 500
        assert flag(command, "--compare-seeds") == "0"


def test_autoattack_takes_the_three_best_methods_by_mean_pgd20_once_the_column_finished(script, tmp_path):
    args = script.parse_args(["--out-dir", str(tmp_path), "--models", "resnet18", "--s2ap-rho", "0"])
    compare = script.make_plan(args).main[0]
    column = compare.columns()[0.999]
    pgd20 = {"harp": (0.30, 0.40), "harp-paper": (0.10, 0.10), "hydra-lamp": (0.60, 0.50), "frontier": (0.45, 0.45)}
    for cell in column[:-1]:
        done = cell.path(compare.root) / "result.json"
        done.parent.mkdir(parents=True)
        accuracy = pgd20[script.folder_name(cell, compare.root)][cell.seed]
        done.write_text(json.dumps({"evaluation": {"robust_acc": {"pgd20": accuracy}}}))
    assert script.ranking(compare, column) is None  # one cell is still running
    # once the compare has ended, a cell that failed will not finish: the finished ones are ranked
    ended = script.ranking(compare, column, ended=True)
    assert [name for name, _ in ended[:3]] == ["hydra-lamp", "frontier", "harp"]
    assert dict(ended)["frontier"] == pytest.approx(0.45)  # its one finished seed
    assert script.ranking(compare, compare.columns()[0.99], ended=True) is None  # nothing of it finished
    last = column[-1].path(compare.root) / "result.json"
    last.parent.mkdir(parents=True)
    last.write_text(json.dumps({"evaluation": {"robust_acc": {"pgd20": pgd20["frontier"][column[-1].seed]}}}))
    assert [name for name, _ in script.ranking(compare, column)[:3]] == ["hydra-lamp", "frontier", "harp"]
