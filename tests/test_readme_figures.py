"""The README's tables equal the committed JSON they come from (a figure that no longer matches its record
fails here): the default run, the full comparison and the pruning-step benchmark."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
RESULTS = ROOT / "benchmarks" / "results"


def _rows(header_start: str) -> list[list[str]]:
    """The cells of the markdown table whose header row starts with ``header_start``."""
    lines = README.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def _pct(value: float, digits: int = 2) -> str:
    return f"{100 * value:.{digits}f}"


def test_default_run_table_is_the_committed_run():
    results = json.loads((RESULTS / "default-run" / "results.json").read_text())
    rows = {row[0]: row[1:] for row in _rows("| model | natural % | pgd20 % |")}
    for label, record in (("dense", results["dense"]), ("pruned (HARP, 99%)", results["pruned"])):
        total = record["prunable_weights"]
        assert rows[label] == [_pct(record["natural_acc"]), _pct(record["robust_acc"]["pgd20"]),
                               _pct(record["sparsity"]), f"{record['kept_weights']:,} / {total:,}"]
    layers = {re.sub(r" \(.*\)$", "", row[0]): row[1:] for row in _rows("| layer | weights | kept | keep-ratio % |")}
    assert layers == {layer["name"]: [f"{layer['numel']:,}", f"{layer['kept']:,}", f"{100 * layer['density']:.3f}"]
                      for layer in results["pruned"]["layers"]}
    seconds = re.search(r"`harp run` with no flags\D*(\d+) s for the run", README)
    assert seconds is not None and int(seconds.group(1)) == round(results["wall_seconds"])


def test_full_comparison_table_is_the_committed_grid():
    compare = json.loads((RESULTS / "compare-full" / "compare.json").read_text())
    by_label: dict[str, dict[float, dict]] = {}
    for row in compare["summary"]:
        by_label.setdefault(row["label"], {})[row["sparsity"]] = row
    table = _rows("| method | 99 % | 99.9 % | 90 % |")
    checked = 0
    for cells in table:
        label = cells[0]
        if label not in by_label:
            continue  # rows from the experiments beside the grid (their own folders)
        for cell, sparsity in zip(cells[1:], (0.99, 0.999, 0.9), strict=True):
            row = by_label[label][sparsity]
            expected = f"{_pct(row['natural_acc'], 1)} / {_pct(row['robust_acc'], 1)}"
            assert cell.replace("**", "").rstrip(" †") == expected
            checked += 1
    assert checked == 3 * len(by_label)
    dense = compare["dense"]
    assert f"dense model {_pct(dense['natural_acc'])} / {_pct(dense['robust_acc']['pgd20'])}" in README


@pytest.mark.parametrize("name", ["small_cnn", "vgg16_bn"])
def test_pruning_step_table_is_the_committed_benchmark(name):
    results = {r["model"]: r for r in json.loads((RESULTS / "prune_step.json").read_text())["results"]}
    row = next(cells for cells in _rows("| model | dense step |") if cells[0].startswith(name))
    record = results[name]
    seconds = record["seconds"]
    assert row[1:5] == [f"{seconds[key]:.3f} s" for key in ("dense", "harp", "harp-resort", "finetune")]
    assert [cell.strip("*") for cell in row[5:8]] == [
        f"{record[key]:.3f}" for key in ("ratio_harp_vs_dense", "ratio_resort_vs_dense", "ratio_finetune_vs_dense")]


def test_autoattack_table_is_the_committed_evaluation():
    record = json.loads((RESULTS / "default-run" / "autoattack-500.json").read_text())
    components = record["attack_details"]["autoattack"]["components"]
    row = _rows("| natural | PGD-20 | APGD-CE |")[0]
    expected = [record["natural_acc"], record["robust_acc"]["pgd20"],
                *(components[name] for name in ("apgd-ce", "apgd-t", "fab-t", "square"))]
    assert [cell.strip("*") for cell in row] == [_pct(value, 1) for value in expected]
    assert components["square"] == record["robust_acc"]["autoattack"] == record["worst_case_acc"]
    sweep = " / ".join(_pct(value, 1) for value in record["sanity"]["robust_acc"])
    assert f"16 × eps: {sweep}%)" in README


@pytest.mark.parametrize("header, folder", [
    ("| method (small_cnn, re-trained dense model) | 99.9 % | 99 % |", "compare-full/frontier-round"),
    ("| method (resnet18_w16) | 99.9 % | 99 % |", "compare-resnet"),
    ("| method (resnet18, one H200) | 99.9 % | 99 % |", "compare-paper-gpu/resnet18"),
])
def test_frontier_comparison_tables_are_the_committed_grids(header, folder):
    compare = json.loads((RESULTS / folder / "compare.json").read_text())
    by_label: dict[str, dict[float, dict]] = {}
    for row in compare["summary"]:
        by_label.setdefault(row["label"], {})[row["sparsity"]] = row
    checked = 0
    for cells in _rows(header):
        label = cells[0].replace("**", "")
        assert label in by_label, f"README row {label!r} has no cells in {folder}/compare.json"
        for cell, sparsity in zip(cells[1:], (0.999, 0.99), strict=True):
            row = by_label[label].get(sparsity)
            if row is None:
                assert cell == "not run"
                continue
            expected = f"{_pct(row['natural_acc'], 1)} / {_pct(row['robust_acc'], 1)}"
            assert cell.replace("**", "").split(" (")[0] == expected, (label, sparsity)
            checked += 1
    assert checked >= 2 * 2
