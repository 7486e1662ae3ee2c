"""The report page (`harp report`, written by `harp run` and `harp compare`) and metrics.jsonl, on tiny runs."""

from __future__ import annotations

import base64
import json
import re
import shutil
import sys
import types

import pytest
from test_run_semantics import TINY

from harp_prune import report as report_module
from harp_prune.cli import main
from harp_prune.compare.report import summarize_cells
from harp_prune.errors import HarpError
from harp_prune.report import write_report, write_report_if_plotting
from harp_prune.training import MetricsLog, load_checkpoint, read_metrics
from harp_prune.training import stage as stage_module

pytest.importorskip("matplotlib")

RUN_SECTIONS = ["Dense vs pruned", "Per-layer keep-ratios of the pruned model", "Pruning schedule",
                "Accuracy per epoch and stage", "Attacks", "Eps sweep", "Settings and environment"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "run"
    assert main(["run", "--out-dir", str(out), *TINY, "--evaluate-attacks", "pgd2,fgsm"]) == 0
    return out


def copied(run, tmp_path):
    shutil.copytree(run, tmp_path / "run")
    return tmp_path / "run"


def headings(html: str) -> list[str]:
    return re.findall(r"<h2>(.*?)</h2>", html)


def embedded_pngs(html: str) -> list[bytes]:
    return [base64.b64decode(data) for data in re.findall(r'src="data:image/png;base64,([^"]+)"', html)]


# metrics.jsonl

def test_metrics_file_has_one_line_per_epoch_with_the_history_values(finished_run):
    results = json.loads((finished_run / "results.json").read_text())
    lines = read_metrics(finished_run / "metrics.jsonl")
    assert [(line["stage"], line["epoch"]) for line in lines] == [
        ("pretrain", 0), ("prune", 0), ("prune", 1), ("finetune", 0)]
    for stage, rows in results["history"].items():
        assert [{k: v for k, v in line.items() if k != "stage"} for line in lines if line["stage"] == stage] == rows
    assert {"gamma", "size_loss", "soft_density", "sparsity", "lr", "train_loss", "robust_acc", "seconds"} <= \
        set(lines[1])


def test_an_interrupted_stage_resumes_without_duplicate_lines(tmp_path, monkeypatch):
    """Killed after epoch 2's line was written but before its checkpoint: the resumed stage redoes epoch 2 and
    its line replaces the old one."""
    # selection on the 50 test images: each epoch's validation is what makes this test slow
    args = ["pretrain", "--out-dir", str(tmp_path / "run"), *TINY, "--pretrain-epochs", "3", "--select-on", "test"]
    save = stage_module.save_atomic

    def interrupted_save(state, path):
        if path.name == "last.pt" and state["epoch"] == 2:
            raise KeyboardInterrupt
        save(state, path)

    monkeypatch.setattr(stage_module, "save_atomic", interrupted_save)
    assert main(args) == 130
    metrics = tmp_path / "run" / "metrics.jsonl"
    assert [line["epoch"] for line in read_metrics(metrics)] == [0, 1, 2]
    monkeypatch.setattr(stage_module, "save_atomic", save)
    assert main([*args, "--resume"]) == 0
    history = load_checkpoint(tmp_path / "run" / "pretrain" / "last.pt")["history"]
    assert read_metrics(metrics) == [{"stage": "pretrain", **row} for row in history]
    assert [row["epoch"] for row in history] == [0, 1, 2]
    assert main(args) == 0  # a fresh start (no --resume) rewrites the stage's lines
    assert [line["epoch"] for line in read_metrics(metrics)] == [0, 1, 2]


def test_a_line_cut_short_by_a_kill_is_skipped(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"stage": "prune", "epoch": 0}\n{"stage": "prune", "ep')
    assert read_metrics(tmp_path / "metrics.jsonl") == [{"stage": "prune", "epoch": 0}]
    log = MetricsLog(tmp_path).open("prune", 1)
    log({"epoch": 1, "lr": 0.1})
    log.close()
    assert [line["epoch"] for line in read_metrics(tmp_path / "metrics.jsonl")] == [0, 1]


def test_tensorboard_gets_every_scalar_and_purges_redone_epochs(tmp_path, monkeypatch):
    made = []

    class FakeWriter:
        def __init__(self, log_dir, purge_step):
            self.log_dir, self.purge_step, self.scalars, self.closed = log_dir, purge_step, [], False
            made.append(self)

        def add_scalar(self, name, value, step):
            self.scalars.append((name, value, step))

        def flush(self):
            pass

        def close(self):
            self.closed = True

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", types.SimpleNamespace(SummaryWriter=FakeWriter))
    log = MetricsLog(tmp_path, tensorboard=True).open("prune", 3)
    log({"epoch": 3, "lr": 0.05, "gamma": 0.2, "budget_reached": 1.0})
    log.close()
    (writer,) = made
    assert writer.log_dir == str(tmp_path / "tensorboard" / "prune") and writer.purge_step == 3 and writer.closed
    assert writer.scalars == [("lr", 0.05, 3), ("gamma", 0.2, 3), ("budget_reached", 1.0, 3)]


def test_tensorboard_asked_for_but_not_installed_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as when not installed
    with pytest.raises(HarpError, match="pip install tensorboard"):
        MetricsLog(tmp_path, tensorboard=True)
    assert main(["pretrain", "--out-dir", str(tmp_path / "run"), *TINY, "--tensorboard"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("harp: error: tensorboard logging was asked for") and error.count("\n") == 1


# the run page

def test_run_writes_a_page_with_every_section_and_the_runs_figures(finished_run):
    results = json.loads((finished_run / "results.json").read_text())
    html = (finished_run / "report.html").read_text()
    assert headings(html) == RUN_SECTIONS
    dense, pruned = results["dense"], results["pruned"]
    for evaluation in (dense, pruned):
        assert f"<td class=\"number\">{100 * evaluation['natural_acc']:.2f}</td>" in html
        assert f"<td class=\"number\">{100 * evaluation['robust_acc']['fgsm']:.2f}</td>" in html
        for accuracy in evaluation["sanity"]["robust_acc"]:  # the eps sweep's table
            assert f"{100 * accuracy:.2f}" in html
    for layer in pruned["layers"]:
        assert f"<td>{layer['name']}</td><td class=\"number\">{layer['numel']:,}</td>" \
               f"<td class=\"number\">{layer['kept']:,}</td><td class=\"number\">{100 * layer['density']:.3f}</td>" \
               in html
    assert f"{100 * pruned['sparsity']:.3f}" in html and "pgd2" in html
    assert "no attack raised a flag" in html
    images = embedded_pngs(html)
    assert len(images) == 5 and all(png.startswith(PNG_SIGNATURE) and len(png) > 5000 for png in images)
    for name in ("keep_ratios", "pruning_schedule", "accuracy_per_epoch", "attacks", "eps_sweep"):
        assert (finished_run / f"{name}.png").read_bytes() in images


def test_the_page_needs_no_metrics_file(finished_run, tmp_path):
    run = copied(finished_run, tmp_path)
    (run / "metrics.jsonl").unlink()
    (run / "report.html").unlink()
    html = write_report(run).read_text()
    assert headings(html) == RUN_SECTIONS and len(embedded_pngs(html)) == 5


def test_a_run_still_training_gets_its_curves_so_far(finished_run, tmp_path):
    run = copied(finished_run, tmp_path)
    (run / "results.json").unlink()
    html = write_report(run).read_text()
    assert "in progress" in html and headings(html) == ["Pruning schedule", "Accuracy per epoch and stage"]


def test_autoattack_components_and_flags_are_shown(finished_run, tmp_path):
    run = copied(finished_run, tmp_path)
    results = json.loads((run / "results.json").read_text())
    flag = "autoattack: apgd-ce: robust accuracy rises with the number of iterations"
    results["pruned"]["attack_details"] = {"autoattack": {"clean_acc": 0.4, "components": {"apgd-ce": 0.31,
                                                                                            "apgd-t": 0.29}}}
    results["pruned"]["flags"] = [flag]
    (run / "results.json").write_text(json.dumps(results))
    html = write_report(run).read_text()
    assert f'<div class="flag">pruned: {flag}</div>' in html
    assert "<td>apgd-t</td><td class=\"number\">29.00</td>" in html and "clean 40.00%" in html


# the compare page

def test_the_compare_page_lists_every_method(finished_run, tmp_path):
    """A comparison's compare.json, its cells made from the tiny run's evaluation."""
    results = json.loads((finished_run / "results.json").read_text())
    methods = ["harp", "lwm", "random"]
    cells = [{"label": method, "method": method, "gamma0": 0.1 if method == "harp" else None, "sparsity": sparsity,
              "seed": 0, "budget_reached_epoch": 1 if method == "harp" else None, "evaluation": results["pruned"],
              "wall_seconds": 1.0} for method in methods for sparsity in (0.9, 0.99)]
    layers = len(results["pruned"]["layers"])
    comparison = {"config": results["config"], "dense": results["dense"], "summary": summarize_cells(cells),
                  "strategies": {"0.9": {"uniform": [0.1] * layers}, "0.99": {"uniform": [0.01] * layers}},
                  "cells": cells, "wall_seconds": 3.0, "environment": results["environment"]}
    out = tmp_path / "cmp"
    out.mkdir()
    (out / "compare.json").write_text(json.dumps(comparison))
    assert main(["report", str(out)]) == 0
    html = (out / "report.html").read_text()
    assert headings(html) == ["Accuracy against sparsity", "Per-layer keep-ratios", "Settings and environment"]
    for method in methods:
        assert html.count(f"<td>{method}</td>") == 2  # one row per sparsity
        assert f"<th>{method}</th>" in html  # a column of the keep-ratio tables
    assert f"{100 * results['pruned']['natural_acc']:.2f}" in html
    assert len(embedded_pngs(html)) == 2
    assert (out / "accuracy_vs_sparsity.png").read_bytes().startswith(PNG_SIGNATURE)
    assert (out / "layer_keep_ratios.png").exists()


# failures and the plotting extra

def test_report_of_a_folder_without_results_is_one_line(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert "holds no results.json, metrics.jsonl or compare.json" in error and error.count("\n") == 1
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "is not a folder" in capsys.readouterr().err


def test_without_matplotlib_run_skips_the_page_and_report_says_how_to_get_it(finished_run, tmp_path, monkeypatch,
                                                                             capsys):
    run = copied(finished_run, tmp_path)
    (run / "report.html").unlink()
    monkeypatch.setattr(report_module, "plotting_available", lambda: False)
    assert write_report_if_plotting(run) is None and not (run / "report.html").exists()
    assert "harp report" in capsys.readouterr().out
    assert main(["report", str(run)]) == 2
    assert "pip install 'harp-prune[plots]'" in capsys.readouterr().err
