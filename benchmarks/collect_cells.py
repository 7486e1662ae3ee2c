"""The table of the finished cells of a `harp compare` out dir, for a grid that did not run to the end.

`harp compare` writes compare.json and compare.md when its whole grid has run. When the CPU ran out first (or
cells were run by several invocations with different method lists), this collects every finished cell
(``cells/<method>/sparsity-<s>/seed-<n>/result.json``) with the same summary and table code, and says which
cells it found:

    python benchmarks/collect_cells.py runs/compare-resnet --out benchmarks/results/compare-resnet
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from harp_prune.compare.report import cell_entry, markdown, summarize_cells
from harp_prune.config import build_config, read_yaml
from harp_prune.results import environment, write_json


def collect(root: Path) -> dict:
    """compare.json's content for the finished cells under ``root`` (no per-strategy densities: no model)."""
    cells = [json.loads(path.read_text()) for path in sorted((root / "cells").glob("*/sparsity-*/seed-*/result.json"))]
    if not cells:
        raise SystemExit(f"no finished cells under {root / 'cells'}")
    dense = json.loads((root / "dense.json").read_text())["evaluation"]
    config = build_config(read_yaml(root / "config.yaml")).to_dict()
    # the cells' own machine, where they all ran on one (cells written before cells recorded it: unknown);
    # this machine, where the collecting ran, is recorded apart
    machines = {json.dumps(cell.get("environment"), sort_keys=True) for cell in cells}
    ran_on = json.loads(machines.pop()) if len(machines) == 1 else None
    return {"config": config, "dense": dense, "summary": summarize_cells(cells), "strategies": {},
            "cells": [cell_entry(cell) for cell in cells],
            "wall_seconds": sum(cell["wall_seconds"] for cell in cells), "environment": ran_on,
            "collected_on": environment()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", type=Path, help="the out dir of harp compare")
    parser.add_argument("--out", type=Path, required=True, help="where compare.json and compare.md go")
    args = parser.parse_args()
    results = collect(args.root)
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(results, args.out / "compare.json")
    table = markdown(results)
    (args.out / "compare.md").write_text(table + "\n")
    print(table)
    print("cells: " + ", ".join(f"{c['label']}@{c['sparsity']:g}/seed {c['seed']}" for c in results["cells"]))


if __name__ == "__main__":
    main()
