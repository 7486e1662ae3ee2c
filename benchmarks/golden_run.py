"""Golden run: a small `harp run` and a small `harp compare`, reduced to the numbers they report.

A refactoring must leave every number identical. Run this before and after the change, each on an idle
machine with the same thread count, and compare:

    OMP_NUM_THREADS=1 python benchmarks/golden_run.py --out /tmp/golden-before.json
    ... change the code ...
    OMP_NUM_THREADS=1 python benchmarks/golden_run.py --out /tmp/golden-after.json --check /tmp/golden-before.json

The record drops what legitimately differs between runs or code layouts: wall times, the environment,
paths, and the echo of the configuration (its layout may change; the numbers it produces may not).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

SMALL = ["--pretrain-epochs", "1", "--prune-epochs", "2", "--finetune-epochs", "1", "--data-train-examples", "1024",
         "--data-test-examples", "256", "--evaluate-sanity-examples", "128", "--attack-steps", "3",
         "--evaluate-pgd-steps", "5", "--no-progress"]
COMPARE = ["--compare-methods", "harp,hydra:lamp,lamp,global-magnitude,random", "--compare-sparsities", "0.99",
           "--compare-seeds", "0"]
# keys whose values are timings, paths, environment or the configuration's own echo
DROPPED = ("second", "wall", "environment", "config", "provenance", "checkpoint", "path", "elapsed")


def scrub(value: Any) -> Any:
    """``value`` without the keys that differ between equal runs."""
    if isinstance(value, dict):
        return {k: scrub(v) for k, v in value.items() if not any(word in k for word in DROPPED)}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    return value


def harp(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "harp_prune.cli", *args], check=True)


def differences(old: Any, new: Any, where: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        found = [f"{where}.{k}: only in {'before' if k in old else 'after'}" for k in old.keys() ^ new.keys()]
        for key in old.keys() & new.keys():
            found += differences(old[key], new[key], f"{where}.{key}")
        return found
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [d for i, (a, b) in enumerate(zip(old, new, strict=True)) for d in differences(a, b, f"{where}[{i}]")]
    return [] if old == new else [f"{where}: {old!r} -> {new!r}"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="where to write the scrubbed numbers (JSON)")
    parser.add_argument("--check", help="a previous --out file every number must equal")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        harp("run", "--out-dir", f"{tmp}/run", *SMALL)
        harp("compare", "--out-dir", f"{tmp}/compare", *SMALL, *COMPARE)
        record = {"run": scrub(json.loads(Path(f"{tmp}/run/results.json").read_text())),
                  "compare": scrub(json.loads(Path(f"{tmp}/compare/compare.json").read_text()))}
    Path(args.out).write_text(json.dumps(record, indent=1, sort_keys=True))
    if args.check:
        found = differences(json.loads(Path(args.check).read_text()), record)
        for line in found[:40]:
            print(line)
        print(f"{len(found)} difference(s) from {args.check}")
        return 1 if found else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
