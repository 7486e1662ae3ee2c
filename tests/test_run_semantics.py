"""Runs that can be trusted: resume checks, seeded evaluations, non-finite losses, options, early validation."""

import copy
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from kept_counts import budget_kept, kept_and_total

from harp_prune import pipeline
from harp_prune.cli import main
from harp_prune.config import build_config
from harp_prune.errors import HarpError
from harp_prune.pruning import build_pruner, sparsity_report
from harp_prune.training import load_model

# a full `harp run` in a few seconds: every stage, both evaluations and the eps sweep
TINY = ["--no-progress", "--data-train-examples", "200", "--data-test-examples", "50", "--attack-steps", "1",
        "--evaluate-pgd-steps", "2", "--evaluate-eps-sweep", "1,16", "--evaluate-sanity-examples", "50",
        "--pretrain-epochs", "1", "--prune-epochs", "2", "--finetune-epochs", "1", "--data-batch-size", "50",
        "--prune-ramp", "0.5"]


def tiny_config(out_dir, **values):
    flags = dict(zip(TINY[1::2], TINY[2::2], strict=True))
    cli_values = {flag[2:].replace("-", ".", 1).replace("-", "_"): value for flag, value in flags.items()}
    return build_config(cli_values={**cli_values, "progress": False, "out_dir": str(out_dir), **values})


def without_times(value):
    """``value`` without what may differ between two runs of the same settings: times (``seconds``,
    ``*_seconds``) and where they ran (``environment``, the config's ``out_dir``)."""
    if isinstance(value, dict):
        return {k: without_times(v) for k, v in value.items()
                if k not in ("seconds", "environment", "out_dir") and not k.endswith("_seconds")}
    if isinstance(value, list):
        return [without_times(v) for v in value]
    return value


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("finished") / "run"
    assert main(["run", "--out-dir", str(out), *TINY]) == 0
    return out


def test_tiny_config_matches_the_flags(tmp_path):
    config = tiny_config(tmp_path)
    assert config.evaluate.eps_sweep == "1,16" and config.prune.method_options["ramp"] == 0.5


# 1. --resume refuses settings that change a stage's result

def test_resume_refuses_another_sparsity_for_an_unfinished_stage(finished_run, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(finished_run, out)
    (out / "prune" / "final.pt").unlink()  # pruning interrupted after its last epoch
    shutil.rmtree(out / "finetune")
    code = main(["run", "--out-dir", str(out), *TINY, "--sparsity", "0.9", "--resume"])
    error = capsys.readouterr().err
    assert code == 2 and error.count("\n") == 1
    assert f"{out / 'prune' / 'last.pt'} was made with prune.sparsity=0.99, now 0.9" in error
    assert "without --resume" in error
    assert not (out / "prune" / "final.pt").exists()


def test_resume_refuses_a_finished_stage_made_with_other_settings(finished_run, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(finished_run, out)
    code = main(["run", "--out-dir", str(out), *TINY, "--pretrain-lr", "0.05", "--attack-steps", "2", "--resume"])
    error = capsys.readouterr().err
    assert code == 2
    assert "pretrain/final.pt was made with attack.steps=1, now 2; pretrain.lr=0.1, now 0.05;" in error


def test_resume_ignores_settings_that_do_not_change_results(finished_run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(finished_run, out)
    (out / "finetune" / "final.pt").unlink()
    assert main(["run", "--out-dir", str(out), *TINY, "--evaluate-pgd-steps", "3", "--device", "cpu",
                 "--progress", "--resume"]) == 0
    assert "pgd3" in json.loads((out / "results.json").read_text())["pruned"]["robust_acc"]


# 2. evaluations are seeded: a resumed run's results.json equals an uninterrupted one's

def test_results_after_resume_equal_an_uninterrupted_run(tmp_path, trained_model, tiny_splits):
    """A dense model that is already fair (so its robust accuracy depends on the attacks' random starts),
    trained on: once straight through, once with pre-training finished by an earlier invocation."""
    flags = {"evaluate.pgd_steps": 1, "evaluate.eps_sweep": "0.5,1", "data.test_examples": None}
    straight, resumed = tiny_config(tmp_path / "straight", **flags), tiny_config(tmp_path / "resumed", **flags)
    pipeline.run(straight, model=copy.deepcopy(trained_model), splits=tiny_splits)
    pipeline.pretrain(resumed, model=copy.deepcopy(trained_model), splits=tiny_splits)
    pipeline.run(resumed, model=copy.deepcopy(trained_model), splits=tiny_splits, resume=True)
    results = [json.loads((tmp_path / name / "results.json").read_text()) for name in ("straight", "resumed")]
    assert without_times(results[0]) == without_times(results[1])


def test_evaluation_is_seeded_and_leaves_the_training_random_stream_alone(tmp_path, trained_model, tiny_splits):
    config = tiny_config(tmp_path / "evaluation", **{"evaluate.pgd_steps": 1, "evaluate.eps_sweep": "0.5,1"})
    ctx = pipeline.prepare(config, tiny_splits)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    first = pipeline.evaluate(config, model=trained_model, ctx=ctx)
    assert torch.equal(torch.get_rng_state(), before)
    torch.manual_seed(7)
    assert without_times(pipeline.evaluate(config, model=trained_model, ctx=ctx)) == without_times(first)


# 3. `harp evaluate` keeps the run's record

def test_evaluate_does_not_rewrite_config_yaml(finished_run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(finished_run, out)
    recorded = (out / "config.yaml").read_bytes()
    output = tmp_path / "eval.json"
    assert main(["evaluate", "--out-dir", str(out), *TINY[:9], "--evaluate-pgd-steps", "4",
                 "--output", str(output)]) == 0
    assert (out / "config.yaml").read_bytes() == recorded
    evaluated = json.loads(output.read_text())
    assert evaluated["config"]["evaluate"]["pgd_steps"] == 4
    assert evaluated["provenance"]["evaluate.pgd_steps"] == "command line"


# 4. a diverging run stops at the first non-finite loss and leaves no finished-looking checkpoint

def test_diverging_learning_rate_stops_the_stage(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["pretrain", "--out-dir", str(out), *TINY, "--pretrain-epochs", "2", "--pretrain-lr", "1e6"])
    error = capsys.readouterr().err
    assert code == 2 and error.count("\n") == 1
    assert re.search(r"pretrain epoch 1, step \d+: the training loss is (nan|inf)", error) and "pretrain.lr" in error
    assert not [p.name for p in (out / "pretrain").glob("*.pt")]


# 5. options the method does not take are refused

@pytest.mark.parametrize(("method", "flag", "value"), [
    ("harp-channel", "--prune-rate-boundary-width", "0.1"),
    ("lwm", "--prune-layer-budget", "erk"),
    ("hydra", "--prune-gamma0", "1"),
])
def test_options_the_method_does_not_take_are_refused_before_training(tmp_path, capsys, method, flag, value):
    out = tmp_path / "run"
    code = main(["run", "--out-dir", str(out), *TINY[:-2], "--method", method, flag, value])
    error = capsys.readouterr().err
    key = "prune." + flag[len("--prune-"):].replace("-", "_")
    assert code == 2 and f"'{method}' does not take {key}" in error
    assert not (out / "pretrain").exists()


def test_build_pruner_refuses_unknown_keyword_arguments():
    with pytest.raises(HarpError,
                       match="pruning method 'hydra' does not take option 'gamma0'; it takes: layer_budget, s2ap_rho"):
        build_pruner("hydra", 0.9, gamma0=1.0)
    with pytest.raises(HarpError, match="pruning method 'harp' does not take option 'gama0'"):
        build_pruner("harp", 0.9, gama0=5.0)


def test_data_set_defaults_reach_harp_only(tmp_path):
    paper = build_config(cli_values={"prune.method": "harp-paper"})
    assert pipeline.make_pruner(paper).schedule.gamma0 == 0.05  # fashion-mnist-small's default γ0
    assert pipeline.make_pruner(build_config(cli_values={"prune.method": "hydra"})).sparsity == 0.99
    config = build_config(cli_values={"prune.method": "random", "seed": 4})
    assert pipeline.make_pruner(config).seed == 4
    config.prune.method_options["layer_budget"] = "erk"  # set in Python: counts as set; random takes no layer budget
    with pytest.raises(HarpError, match=r"'random' does not take prune\.layer_budget"):
        pipeline.make_pruner(config)


# 6. a config that cannot run is refused before pre-training

@pytest.mark.parametrize(("flags", "message"), [
    (["--evaluate-attacks", "pgd20,nonsense"], "unknown attack 'nonsense'"),
    (["--prune-init-strategy", "nonsense"], "prune.init_strategy 'nonsense' is not a layer budget"),
    (["--evaluate-eps-sweep", "1,x"], "evaluate.eps_sweep must be"),
])
def test_a_config_that_cannot_run_fails_before_training(tmp_path, capsys, flags, message):
    out = tmp_path / "run"
    assert main(["run", "--out-dir", str(out), *TINY, *flags]) == 2
    assert message in capsys.readouterr().err
    assert not (out / "pretrain").exists()


@pytest.mark.parametrize(("flags", "message"), [
    (["--method", "nonsense"], "argument --prune-method/--method: invalid choice: 'nonsense'"),
    (["--finetune-objective", "nonsense"], "argument --finetune-objective: invalid choice: 'nonsense'"),
    (["--method", "harp-channel", "--prune-channel-target", "bytes"],
     "argument --prune-channel-target: invalid choice: 'bytes'"),
])
def test_a_name_outside_the_choices_is_refused_by_the_parser(tmp_path, capsys, flags, message):
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as info:
        main(["run", "--out-dir", str(out), *TINY, *flags])
    assert info.value.code == 2 and message in capsys.readouterr().err
    assert not out.exists()


# 7. edge cases: sparsity 0, zero pruning epochs, --resume on an empty out dir

def test_sparsity_zero_keeps_every_weight(finished_run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(finished_run / "pretrain", out / "pretrain")
    assert main(["run", "--out-dir", str(out), *TINY, "--sparsity", "0", "--resume"]) == 0
    assert json.loads((out / "results.json").read_text())["pruned"]["sparsity"] == 0.0


def test_zero_pruning_epochs_project_the_initial_strategy(finished_run, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(finished_run / "pretrain", out / "pretrain")
    assert main(["prune", "--out-dir", str(out), *TINY, "--prune-epochs", "0"]) == 0
    assert "0 pruning epochs" in capsys.readouterr().out
    model = load_model(out / "prune" / "final.pt")[0]
    kept, total = kept_and_total(model)
    assert total == sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Conv2d | torch.nn.Linear))
    assert kept == budget_kept(total, 0.99) and sparsity_report(model).kept == kept


def test_resume_in_an_empty_out_dir_starts_fresh(tmp_path, capsys):
    out = tmp_path / "never-run"
    assert main(["pretrain", "--out-dir", str(out), *TINY, "--resume"]) == 0
    assert f"nothing to resume in {out}" in capsys.readouterr().out
    assert (out / "pretrain" / "final.pt").exists()


# 2 (measured): a `harp run` killed in each stage and resumed writes the results of an uninterrupted run

KILLABLE = ["--no-progress", "--data-train-examples", "400", "--data-test-examples", "100", "--attack-steps", "1",
            "--evaluate-pgd-steps", "2", "--evaluate-eps-sweep", "0.5,1", "--evaluate-sanity-examples", "100",
            "--pretrain-epochs", "3", "--prune-epochs", "3", "--finetune-epochs", "3", "--data-batch-size", "50",
            "--prune-ramp", "0.5"]


def _harp_run(out, *extra: str) -> subprocess.Popen:
    """`harp run` in a subprocess: every run of the comparison the same way (in-process runs use this
    process's thread count, which changes float sums in the last digits)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.Popen([sys.executable, "-m", "harp_prune.cli", "run", "--out-dir", str(out), *KILLABLE, *extra],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["pretrain", "prune", "finetune"])
def test_run_killed_in_a_stage_and_resumed_matches_an_uninterrupted_run(tmp_path_factory, stage):
    clean = tmp_path_factory.getbasetemp() / "uninterrupted"
    if not (clean / "results.json").exists():
        assert _harp_run(clean).wait() == 0
    killed = tmp_path_factory.mktemp("killed") / "run"
    process = _harp_run(killed)
    last, deadline = killed / stage / "last.pt", time.time() + 300
    while not last.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert last.exists() and not (killed / stage / "final.pt").exists(), f"{stage} was not killed mid-stage"
    assert _harp_run(killed, "--resume").wait() == 0
    results = [json.loads((out / "results.json").read_text()) for out in (clean, killed)]
    assert without_times(results[0]) == without_times(results[1])
