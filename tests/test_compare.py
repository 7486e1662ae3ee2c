"""`harp compare`: the grid, the outputs, and resuming from cached cells."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest
import torch
from kept_counts import budget_kept, masked_weight_counts

import harp_prune as hp
from harp_prune import compare as compare_module
from harp_prune import pipeline
from harp_prune.compare import Cell, cell_config, compare, grid
from harp_prune.compare import cells as cells_module
from harp_prune.config import build_config, read_yaml
from harp_prune.errors import HarpError
from harp_prune.pipeline import stages
from harp_prune.presets import preset_names, resolve_config_file
from harp_prune.pruning import rebuild_pruner

SMALL_PRESET = resolve_config_file("compare-small")
BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_benchmark(name: str) -> ModuleType:
    """A script of benchmarks/ as a module (the folder is not a package)."""
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _config(tmp_path, **extra):
    """The compare-small preset (harp and lwm at 99%), cut down further for the test's time budget."""
    return build_config(read_yaml(SMALL_PRESET), {
        "out_dir": str(tmp_path / "cmp"), "progress": False, "attack.steps": 2, "evaluate.pgd_steps": 2,
        "pretrain.epochs": 1, "prune.epochs": 1, "finetune.epochs": 1, "data.batch_size": 100, **extra,
    })


def test_grid_and_validation(tmp_path):
    config = _config(tmp_path, **{"compare.methods": "harp-paper,hydra", "compare.sparsities": "0.9,0.99",
                                  "compare.gamma0_sweep": "0.01,0.1", "prune.gamma0": 0.01})
    cells = grid(config)
    assert Cell("hydra", 0.9, 0) in cells and Cell("harp-paper", 0.99, 0, (("gamma0", 0.1),)) in cells
    # the plain harp-paper cell's (prune.gamma0 = 0.01)
    assert Cell("harp-paper", 0.99, 0, (("gamma0", 0.01),)) not in cells
    assert len(cells) == 6
    with pytest.raises(HarpError, match="unknown pruning method 'hidra'; choose one of"):
        grid(_config(tmp_path, **{"compare.methods": "harp,hidra"}))
    with pytest.raises(HarpError, match="layer budget"):
        grid(_config(tmp_path, **{"compare.methods": "lwm:lamp"}))
    config = _config(tmp_path, **{"compare.methods": "hydra:lamp,harp:erk"})
    hydra_lamp, harp_erk = grid(config)
    assert hydra_lamp.label == "hydra:lamp" and harp_erk.label == "harp:erk"
    source = tmp_path / "dense.pt"
    assert cell_config(config, hydra_lamp, source, tmp_path).prune.method_options["layer_budget"] == "lamp"
    assert cell_config(config, harp_erk, source, tmp_path).prune.method_options["init_strategy"] == "erk"
    with pytest.raises(HarpError, match="sparsities"):
        grid(_config(tmp_path, **{"compare.sparsities": "0.99,1.5"}))
    with pytest.raises(HarpError, match="comma-separated"):
        grid(_config(tmp_path, **{"compare.seeds": "0,a"}))
    with pytest.raises(HarpError, match=r"compare.jobs must be >= 1"):
        _config(tmp_path, **{"compare.jobs": 0})


@pytest.mark.slow
def test_compare_writes_results_and_resumes(tmp_path, tiny_splits, monkeypatch):
    config = _config(tmp_path)
    results = compare(config, splits=tiny_splits)
    out = tmp_path / "cmp"
    assert {r["label"] for r in results["summary"]} == {"harp", "lwm"}
    for row in results["summary"]:
        assert 0.0 <= row["robust_acc"] <= row["natural_acc"] <= 1.0
    for cell in grid(config):  # kept counted from each cell's fine-tuned W * M
        counts = masked_weight_counts(hp.load_model(cell.path(out) / "finetune" / "final.pt")[0]).values()
        kept, total = sum(k for k, _ in counts), sum(n for _, n in counts)
        # harp: one global budget; lwm: round(d * N) in every layer, at least one weight
        per_layer = sum(max(1, round(0.01 * n)) for _, n in counts)
        assert kept == (budget_kept(total, 0.99) if cell.method == "harp" else per_layer)
        row = next(r for r in results["summary"] if r["label"] == cell.label)
        assert row["realised_sparsity"] == pytest.approx(1 - kept / total)
    saved = json.loads((out / "compare.json").read_text())
    assert saved["strategies"]["0.99"].keys() == {"uniform", "lamp", "erk"}
    table = (out / "compare.md").read_text()
    assert "| harp |" in table and "| lwm |" in table and "per-layer keep-ratio" in table
    assert (out / "accuracy_vs_sparsity.png").stat().st_size > 0 and (out / "layer_keep_ratios.png").exists()
    for cell in grid(config):
        assert json.loads((cell.path(out) / "result.json").read_text())["environment"]["torch"] == torch.__version__
    assert all("environment" not in cell for cell in saved["cells"])

    # collect_cells.py records the machine the cells ran on, and the one it ran on apart; mixed machines: unknown
    collect_cells = load_benchmark("collect_cells")
    collected = collect_cells.collect(out)
    assert collected["summary"] == results["summary"]
    assert collected["environment"]["torch"] == torch.__version__ and collected["collected_on"]
    result_json = grid(config)[0].path(out) / "result.json"
    moved = json.loads(result_json.read_text())
    result_json.write_text(json.dumps({**moved, "environment": {**moved["environment"], "torch": "elsewhere"}}))
    assert collect_cells.collect(out)["environment"] is None
    result_json.write_text(json.dumps(moved))

    # a second invocation reuses the pre-trained model and every finished cell: nothing is trained again
    def refuse(*args, **kwargs):
        raise AssertionError("a finished stage ran again")

    for name in ("prune", "finetune"):
        monkeypatch.setattr(pipeline, name, refuse)
    monkeypatch.setattr(stages, "run_stage", refuse)
    again = compare(config, splits=tiny_splits)
    assert again["summary"] == results["summary"]

    # a cached cell made under other settings is refused, not mixed in
    changed = dataclasses.replace(config, finetune=dataclasses.replace(config.finetune, lr=0.05))
    with pytest.raises(HarpError, match="different settings"):
        compare_module.compare(changed, splits=tiny_splits)


@pytest.mark.slow
def test_parallel_cells_equal_sequential_cells(tmp_path, tiny_splits, monkeypatch):
    """compare.jobs only changes how many cells run at once, never what a cell computes."""
    monkeypatch.setattr(cells_module.os, "cpu_count", lambda: 2)  # each of the 2 workers gets 1 thread
    threads = torch.get_num_threads()
    # one thread as in the workers, so floating-point sums are ordered alike: also for the dense model, which
    # both comparisons pre-train in this process (harp's learned allocation amplifies a last-bit difference)
    torch.set_num_threads(1)
    try:
        parallel = compare(_config(tmp_path / "parallel", **{"compare.jobs": 2}), splits=tiny_splits)
        sequential = compare(_config(tmp_path / "sequential"), splits=tiny_splits)
    finally:
        torch.set_num_threads(threads)
    assert [c["label"] for c in parallel["cells"]] == [c["label"] for c in sequential["cells"]] == ["harp", "lwm"]
    for mine, theirs in zip(parallel["cells"], sequential["cells"], strict=True):
        for key in ("natural_acc", "robust_acc", "kept_weights", "layers"):
            assert mine["evaluation"][key] == theirs["evaluation"][key]
    cell_log = Cell("harp", 0.99, 0).path(tmp_path / "parallel" / "cmp") / "log.txt"
    assert "[prune] epoch 1/1" in cell_log.read_text()

    # a worker's failure is reported with the others' results kept, its traceback in the cell's log
    result_json = cell_log.parent / "result.json"
    planted = json.loads(result_json.read_text())
    planted["config"]["finetune"]["lr"] = 0.5
    result_json.write_text(json.dumps(planted))
    with pytest.raises(HarpError, match=r"^1 of 2 cells failed; .*harp at sparsity 0.99, seed 0: .*different settings"):
        compare(_config(tmp_path / "parallel", **{"compare.jobs": 2}), splits=tiny_splits)
    assert "Traceback" in cell_log.read_text()


@pytest.mark.parametrize("name", preset_names())
def test_presets_build_a_valid_comparison(name):
    path = resolve_config_file(name)
    config = build_config(read_yaml(path), file_name=str(path))
    cells = grid(config)
    methods, sparsities, seeds = (getattr(config.compare, key).split(",") for key in ("methods", "sparsities", "seeds"))
    assert {(c.label, c.sparsity, c.seed) for c in cells if c.gamma0 is None} == \
        {(m.strip(), float(s), int(seed)) for m in methods for s in sparsities for seed in seeds}
    assert all(0.9 <= cell.sparsity < 1 for cell in cells)


def test_cli_compare_reports_bad_methods(tmp_path, capsys):
    from harp_prune.cli import main

    assert main(["compare", "--out-dir", str(tmp_path / "x"), "--compare-methods", "harp,bogus"]) == 2
    assert "unknown pruning method 'bogus'" in capsys.readouterr().err


def test_a_presets_option_for_methods_not_compared_is_dropped_but_a_flags_is_refused(tmp_path, capsys):
    preset = read_yaml(resolve_config_file("compare-full"))  # sets prune.gamma0 (harp-paper's)
    config = build_config(preset, {"out_dir": str(tmp_path / "cmp"), "compare.methods": "lamp,frontier"},
                          file_name="compare-full")
    cells = grid(config)
    assert {cell.method for cell in cells} == {"lamp", "frontier"}
    assert "gamma0" not in config.prune.method_options
    assert "prune.gamma0 (set in compare-full) is taken by none of frontier, lamp" in capsys.readouterr().out
    with pytest.raises(HarpError, match=r"does not take prune.gamma0 \(set in command line\)"):
        grid(build_config(preset, {"out_dir": str(tmp_path / "cmp"), "compare.methods": "lamp",
                                   "prune.gamma0": "0.2"}, file_name="compare-full"))


def test_a_cached_cell_made_under_another_method_default_is_refused(tmp_path):
    """The config records only what someone set; the cell's pruner record has every option. A frontier cell
    from before value_scale and travel existed (its record lacks them: legacy 'shared' and 0) must not stand
    in for a cell of today's defaults ('layer', 3), nor one made with another value set."""
    config = build_config(prune={"method": "frontier", "sparsity": 0.99}, out_dir=str(tmp_path))
    today = hp.build_pruner("frontier", 0.99).describe()
    cells_module.check_cached_options(today, config, tmp_path / "result.json")  # same options: reused
    before = {key: value for key, value in today.items() if key not in ("value_scale", "travel")}
    made_before = r"other frontier options \(value_scale=shared, now layer; travel=0.0, now 3.0\)"
    with pytest.raises(HarpError, match=made_before):
        cells_module.check_cached_options(before, config, tmp_path / "result.json")
    shared = hp.build_pruner("frontier", 0.99, value_scale="shared").describe()
    with pytest.raises(HarpError, match="value_scale=shared, now layer"):
        cells_module.check_cached_options(shared, config, tmp_path / "result.json")
    set_now = build_config(prune={"method": "frontier", "sparsity": 0.99, "value_scale": "shared", "travel": 0},
                           out_dir=str(tmp_path))
    cells_module.check_cached_options(before, set_now, tmp_path / "result.json")  # the old cell, asked for again
    hydra = build_config(prune={"method": "hydra", "sparsity": 0.99}, out_dir=str(tmp_path))
    old_hydra = {key: value for key, value in hp.build_pruner("hydra", 0.99).describe().items() if key != "s2ap_rho"}
    cells_module.check_cached_options(old_hydra, hydra, tmp_path / "result.json")  # s2ap_rho's default is the old way
    assert rebuild_pruner(before).options.value_scale == "shared"  # a checkpoint from then rebuilds as it ran


@pytest.mark.parametrize("error", [HarpError("a bad input"), RuntimeError("a bug")])
def test_a_failed_cell_does_not_stop_the_others(tmp_path, monkeypatch, capsys, error):
    config = _config(tmp_path, **{"compare.methods": "harp,lwm", "compare.seeds": "0,1"})
    cells = grid(config)
    ran = []

    def fake_run_cell(config, cell, root, source, splits):
        ran.append(cell)
        if cell == cells[0]:
            raise error
        return {"label": cell.label}

    monkeypatch.setattr(cells_module, "run_cell", fake_run_cell)
    with pytest.raises(HarpError) as raised:
        cells_module.run_cells(config, cells, tmp_path, tmp_path / "dense.pt", None, meanwhile=lambda: None)
    assert ran == cells  # every cell after the failed one still ran
    message = str(raised.value)
    assert message.startswith(f"1 of {len(cells)} cells failed") and str(error) in message
    assert f"{cells[0].label} at sparsity 0.99, seed {cells[0].seed}" in message
    assert ("Traceback" in capsys.readouterr().err) == (not isinstance(error, HarpError))


def test_a_cached_cell_is_compared_by_its_methods_effective_options(tmp_path):
    """A cell made with a method option set to its default is the cell asked for without it, and the other way
    round; one made with another value is refused, whether that value was set or a default."""
    def config(**options):
        return build_config(prune={"method": "frontier", "sparsity": 0.99, **options}, out_dir=str(tmp_path))

    def cell(**options):
        return {"config": config(**options).to_dict(),
                "pruning": hp.build_pruner("frontier", 0.99, **options).describe()}

    where = tmp_path / "result.json"
    cells_module.check_cached_cell(cell(travel=3), config(), "frontier", where)
    cells_module.check_cached_cell(cell(), config(travel=3), "frontier", where)
    with pytest.raises(HarpError, match=r"travel=2\.0, now 3\.0"):
        cells_module.check_cached_cell(cell(travel=2), config(), "frontier", where)
    with pytest.raises(HarpError, match=r"travel=3\.0, now 2\.0"):
        cells_module.check_cached_cell(cell(), config(travel=2), "frontier", where)
    # a record without the pruner's (older cells): what was set is all there is to compare
    with pytest.raises(HarpError, match="different settings"):
        cells_module.check_cached_cell({"config": cell(travel=3)["config"]}, config(), "frontier", where)
    # settings that are not the method's still count
    changed = dataclasses.replace(config(), finetune=dataclasses.replace(config().finetune, lr=0.5))
    with pytest.raises(HarpError, match="different settings"):
        cells_module.check_cached_cell(cell(), changed, "frontier", where)
