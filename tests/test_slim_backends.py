"""benchmarks/slim_backends.py runs without Torch-Pruning (its rows say so) and, where it is installed, finds
harp's slimming and Torch-Pruning's exact use correct on a residual network and its direct use not."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _benchmark():
    spec = importlib.util.spec_from_file_location("slim_backends", ROOT / "benchmarks" / "slim_backends.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rows(bench, name: str, shape: tuple[int, int, int], tp) -> dict:
    models = bench._models(None)
    masked = bench.masked_model(models[f"zoo/{name}"][0], shape, 0.5)
    return bench.compare_backends(masked, shape, tp)


def test_without_torch_pruning_only_harp_runs():
    bench = _benchmark()
    rows = _rows(bench, "small_cnn", (1, 28, 28), None)
    assert rows["harp"]["status"] == "correct" and rows["harp"]["parameter_fraction"] < 0.5
    assert rows["tp-direct"] == rows["tp-exact"] == {"status": "not installed"}


def test_torch_pruning_exact_use_is_correct_and_direct_use_is_not():
    tp = pytest.importorskip("torch_pruning", reason="Torch-Pruning is not installed (pip install torch-pruning)")
    rows = _rows(_benchmark(), "resnet18_w16", (3, 32, 32), tp)
    assert rows["harp"]["status"] == rows["tp-exact"]["status"] == "correct"
    assert rows["tp-direct"]["status"] == "not exact"


def test_the_committed_comparison_has_every_backend_on_every_model():
    results = json.loads((ROOT / "benchmarks" / "results" / "slim_backends.json").read_text())
    assert results["versions"]["torch_pruning"], "the committed table was made without Torch-Pruning"
    for name, record in results["models"].items():
        assert set(record["backends"]) == {"harp", "tp-direct", "tp-exact"}, name
        assert record["backends"]["harp"]["status"] == "correct", name
