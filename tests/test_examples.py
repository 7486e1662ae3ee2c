"""Every script in examples/ runs, on tiny settings (--quick), in a fresh process as a user would start it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def _run(script: str, *arguments: str, cwd: Path) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(EXAMPLES / script), "--quick", *arguments], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_every_example_is_tested():
    scripts = {p.name for p in EXAMPLES.glob("*.py") if not p.name.startswith("_")}
    assert scripts == {"own_training_loop.py", "prune_your_model.py", "evaluate_any_model.py",
                       "export_and_run_onnx.py"}


def test_own_training_loop(tmp_path):
    output = _run("own_training_loop.py", cwd=tmp_path)
    assert "pruning epoch 0: {'gamma': " in output and "'budget_reached': 1.0" in output and "sparsity 0.950" in output


def test_prune_your_model(tmp_path):
    output = _run("prune_your_model.py", "--out", str(tmp_path / "run"), cwd=tmp_path)
    assert "pruned: natural" in output and "sparsity 0.950" in output
    assert (tmp_path / "run" / "results.json").exists() and "reloaded:" in output


def test_evaluate_any_model(tmp_path):
    output = _run("evaluate_any_model.py", "--output", str(tmp_path / "r.json"), cwd=tmp_path)
    record = json.loads((tmp_path / "r.json").read_text())
    assert set(record["robust_acc"]) == {"pgd20", "autoattack"} and "worst case" in output
    assert record["n_examples"] == 64 and record["threat_model"] == "Linf"


def test_export_and_run_onnx(tmp_path):
    pytest.importorskip("onnxruntime")
    output = _run("export_and_run_onnx.py", "--out", str(tmp_path / "exports"), cwd=tmp_path)
    assert (tmp_path / "exports" / "model.slim.onnx").exists() and "onnxruntime on 16 images" in output
    differences = [float(line.rsplit(" ", 1)[1]) for line in output.splitlines() if "largest difference" in line]
    assert len(differences) == 2 and max(differences) < 1e-4
