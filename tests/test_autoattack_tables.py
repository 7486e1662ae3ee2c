"""The AutoAttack tables of the results READMEs equal the per-cell records committed beside them: a row that no
longer matches its records (a cell rerun, a record moved to a variant) fails here."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
START = "<!-- autoattack table: benchmarks/autoattack_cells.py --report -->"
END = "<!-- end of the autoattack table -->"


def _autoattack_cells():
    spec = importlib.util.spec_from_file_location("autoattack_cells", ROOT / "benchmarks" / "autoattack_cells.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _readme_rows(readme: Path) -> list[str]:
    text = readme.read_text(encoding="utf-8")
    table = text[text.index(START) + len(START):text.index(END)]
    return [line for line in table.splitlines() if line.startswith("|")][2:]


@pytest.mark.parametrize("folder, images", [("compare-resnet", 200), ("compare-full/frontier-round", 500)])
def test_autoattack_table_is_the_committed_records(folder, images):
    """A row labelled 'frontier, <variant>' comes from variants/<variant, dashed>/autoattack-<images>/."""
    table_rows = _autoattack_cells().table_rows
    rows = _readme_rows(RESULTS / folder / "README.md")
    labels = {row.split("|")[1].strip() for row in rows}
    expected = []
    for label in sorted(labels):
        method, _, variant = label.partition(", ")
        base = RESULTS / folder / ("variants/" + variant.replace(" ", "-") if variant else "")
        records = [json.loads(path.read_text()) for path in sorted((base / f"autoattack-{images}").glob("*.json"))]
        records = [record for record in records if Path(record["cell"]).parts[1] == method]
        assert records, f"{folder}: README row {label!r} has no records in {base.relative_to(ROOT)}"
        expected += [row.replace(f"| {method} |", f"| {label} |", 1) for row in table_rows(records)]
    assert sorted(rows) == sorted(expected)
    # every committed record of the folder itself is in the table
    committed = {Path(json.loads(path.read_text())["cell"]).parts[1]
                 for path in (RESULTS / folder / f"autoattack-{images}").glob("*.json")}
    assert committed <= labels
