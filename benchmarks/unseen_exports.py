"""Largest difference between each export and the pruned model it came from, on the unseen-model test's models.

    python benchmarks/unseen_exports.py [--output benchmarks/results/unseen_exports.json]

Prunes tests/test_unseen_models.py's CNN (depthwise/grouped convs, reused module, tied weights, residual)
and small transformer with every weight-masking method at 90%, exports each as zeroed, sparse, slim, ONNX
and CSR, and prints max |export - masked model| per cell (the tests assert < 1e-4).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from test_unseen_models import WEIGHT_METHODS, TinyViT, UnseenCNN, _check_exports, _prune


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default=None, help="write the differences as JSON here")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")  # the ONNX tracer's notes on attention's shape checks
    cells = {}
    for make in (UnseenCNN, TinyViT):
        for method in WEIGHT_METHODS:
            with tempfile.TemporaryDirectory() as folder:
                cells[f"{make.__name__}/{method}"] = _check_exports(_prune(make(), method), make, Path(folder))
    worst = max(((cell, fmt, value) for cell, row in cells.items() for fmt, value in row.items()),
                key=lambda item: item[2])
    for cell, row in cells.items():
        print(f"{cell:28s} " + "  ".join(f"{fmt} {value:.1e}" for fmt, value in row.items()))
    print(f"largest: {worst[2]:.2e} ({worst[1]}, {worst[0]})")
    if args.output:
        Path(args.output).write_text(json.dumps({"cells": cells, "largest": worst}, indent=2) + "\n")


if __name__ == "__main__":
    main()
