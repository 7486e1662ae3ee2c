"""Performance work that must not change results: masked weights computed once where they are fixed."""

from __future__ import annotations

from contextlib import nullcontext

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from harp_prune.attacks import PGD, base
from harp_prune.models import build_model
from harp_prune.pruning import HarpPruner, WeightMask
from harp_prune.training import PGDAT, loop


def _pruned_model(sparsity: float = 0.9) -> tuple[torch.nn.Module, HarpPruner]:
    torch.manual_seed(0)
    model = build_model("small_cnn", (1, 28, 28), 10, [0.5], [0.25])
    pruner = HarpPruner(sparsity)
    pruner.attach(model)
    pruner.finalize()
    return model, pruner


def _finetune_gradients() -> list[list[torch.Tensor]]:
    """The weight gradients of two fine-tuning steps (masks fixed, weights trained by PGD-AT)."""
    model, pruner = _pruned_model()
    frozen = {id(p) for layer in pruner.layers for p in (layer.scores, layer.rate)}
    for param in model.parameters():
        param.requires_grad_(id(param) not in frozen)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=0.1, momentum=0.9)
    objective = PGDAT(PGD(0.1, 0.025, 3))
    generator = torch.Generator().manual_seed(1)
    gradients = []
    for _ in range(2):  # the second step's attack must see the weights the first step changed
        images, labels = torch.rand(8, 1, 28, 28, generator=generator), torch.randint(0, 10, (8,), generator=generator)
        model.train()
        loss, _ = objective.loss(model, images, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        gradients.append([p.grad.clone() for p in params])
        optimizer.step()
    return gradients


def test_a_fine_tuning_step_has_the_same_gradients_with_and_without_the_attack_cache(monkeypatch):
    entered = []
    original = base.fixed_weights

    def counting(model):
        entered.append(model)
        return original(model)

    monkeypatch.setattr(base, "fixed_weights", counting)
    cached = _finetune_gradients()
    assert len(entered) == 2  # each step's attack ran on masked weights computed once
    monkeypatch.setattr(base, "fixed_weights", lambda model: nullcontext())
    plain = _finetune_gradients()
    for cached_step, plain_step in zip(cached, plain, strict=True):
        assert all(torch.equal(a, b) for a, b in zip(cached_step, plain_step, strict=True))


@pytest.mark.parametrize("attacked", [False, True])
def test_an_evaluation_pass_computes_the_masked_weights_once(monkeypatch, attacked):
    """Validation and evaluation (``accuracy``/``predictions``) read fixed weights: one W * M per layer per pass,
    not one per batch and attack step, with the same predictions as without the cache."""
    model, pruner = _pruned_model()
    generator = torch.Generator().manual_seed(2)
    loader = DataLoader(TensorDataset(torch.rand(12, 1, 28, 28, generator=generator),
                                      torch.randint(0, 10, (12,), generator=generator)), batch_size=4)
    attack = PGD(0.1, 0.025, 2) if attacked else None
    computed = []
    original_forward = WeightMask.forward

    def counting_forward(self, weight):
        computed.append(self)
        return original_forward(self, weight)

    monkeypatch.setattr(WeightMask, "forward", counting_forward)
    torch.manual_seed(3)
    cached = loop.predictions(model, loader, torch.device("cpu"), attack)
    assert len(computed) == len(pruner.layers)
    monkeypatch.setattr(loop, "fixed_weights", lambda model: nullcontext())
    monkeypatch.setattr(base, "fixed_weights", lambda model: nullcontext())
    torch.manual_seed(3)
    plain = loop.predictions(model, loader, torch.device("cpu"), attack)
    assert all(torch.equal(a, b) for a, b in zip(cached, plain, strict=True))


def test_the_command_sets_the_passive_wait_policy_unless_the_user_chose():
    from harp_prune.threads import set_wait_policy

    for environ, policy in (({}, "PASSIVE"), ({"OMP_WAIT_POLICY": "ACTIVE"}, "ACTIVE"),
                            ({"HARP_THREAD_POLICY": "off"}, None)):
        set_wait_policy(environ)
        assert environ.get("OMP_WAIT_POLICY") == policy


def test_the_thread_count_is_capped_at_the_usable_cpus_unless_the_user_chose(tmp_path):
    from harp_prune.threads import cgroup_cpu_limit, thread_count

    assert thread_count({}, current=8, usable=2) == 2
    assert thread_count({}, current=2, usable=4) is None
    assert thread_count({"OMP_NUM_THREADS": "8"}, current=8, usable=2) is None
    assert thread_count({"HARP_THREAD_POLICY": "off"}, current=8, usable=2) is None
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text("150000 100000\n")
    assert cgroup_cpu_limit(cpu_max) == 2
    cpu_max.write_text("max 100000\n")
    assert cgroup_cpu_limit(cpu_max) is None
    assert cgroup_cpu_limit(tmp_path / "absent") is None


# a stand-in for the command (runpy, as `python -m harp_prune`) that prints OMP_WAIT_POLICY as torch starts loading
_SPY = """
import os, runpy, sys
class Spy:
    def find_spec(self, name, path=None, target=None):
        if name == "torch":
            print("policy", os.environ.get("OMP_WAIT_POLICY"))
            sys.meta_path.remove(self)
sys.meta_path.insert(0, Spy())
sys.argv = ["harp", *sys.argv[1:]]
runpy.run_module("harp_prune", run_name="__main__")
"""


@pytest.mark.parametrize(("setting", "seen"), [({}, ["PASSIVE"]), ({"OMP_WAIT_POLICY": "ACTIVE"}, ["ACTIVE"]),
                                               ({"HARP_THREAD_POLICY": "off"}, ["None"])])
def test_the_harp_command_imports_torch_once_under_the_passive_wait_policy(setting, seen, tmp_path):
    """The command line sets OMP_WAIT_POLICY=PASSIVE in its own environment before it first imports torch
    (libgomp reads it then), without starting itself again: torch starts loading once. A user's
    OMP_WAIT_POLICY or HARP_THREAD_POLICY=off is left alone."""
    import os
    import subprocess
    import sys

    environment = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "HARP_THREAD_POLICY")}
    # a command that imports torch and then fails at once: the report of a folder that does not exist
    done = subprocess.run([sys.executable, "-c", _SPY, "report", str(tmp_path / "absent")],
                          env={**environment, **setting}, capture_output=True, text=True, timeout=300, check=False)
    assert [line.split()[1] for line in done.stdout.splitlines() if line.startswith("policy ")] == seen, done.stderr
    assert "is not a folder" in done.stderr


def _benchmark(name: str):
    """A script of benchmarks/ as a module (the folder is not a package)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_start_up_script_times_the_helps_against_import_torch(tmp_path):
    import json

    output = tmp_path / "cli_startup.json"
    _benchmark("cli_startup").main(["--repeats", "1", "--output", str(output)])
    rows = json.loads(output.read_text())["rows"]
    assert rows["import torch"]["versus_import_torch"] == 1.0 and rows["harp --help"]["torch_imports"] == 0
    assert rows["harp report (a real command)"]["torch_imports"] == 1


def test_the_gpu_throughput_script_runs_in_quick_mode_on_the_cpu(tmp_path):
    import json

    output = tmp_path / "throughput.json"
    _benchmark("gpu_throughput").main(["--quick", "--output", str(output)])
    figures = json.loads(output.read_text())
    assert figures["device"] == "cpu"
    assert [(row["stage"], row["batch"]) for row in figures["rows"]] == [("dense", 8), ("prune", 8), ("finetune", 8)]
    assert all(rate > 0 for row in figures["rows"] for rate in row["images_per_second"].values())
    assert figures["rows"][0]["versus_dense"] == {"fp32": 1.0, "bf16": 1.0}


def test_the_fair_load_script_times_tiny_runs_alone_and_beside_a_burner(tmp_path):
    import json

    output = tmp_path / "fair_load.json"
    arguments = ["--quick", "--scenarios", "alone,burner", "--policies", "on", "--output", str(output)]
    _benchmark("fair_load").main(arguments)
    rows = json.loads(output.read_text())["scenarios"]["policy on"]
    assert set(rows) == {"alone", "burner"} and rows["alone"]["versus_alone"] == 1.0
    assert all(row["wall_seconds"] > 0 and row["cpu_seconds"] > 0 for row in rows.values())
