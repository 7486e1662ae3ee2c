"""Start-up of the ``harp`` command: its help against ``python -c "import torch"``, measured in the same run.

    python benchmarks/cli_startup.py                 # 5 rounds, writes benchmarks/results/cli_startup.json
    python benchmarks/cli_startup.py --repeats 1 --output /tmp/startup.json   # a quick check

Each round starts, in a rotating order (so machine noise hits all alike), fresh interpreters for:
``import torch``; ``harp --help``; ``harp <command> --help`` for every command, with the flag table cached
(``harp_prune.cli.table``); ``harp run --help`` with an empty cache (the first help after an install or an
edit of the package, which describes the registries and so imports torch); and a real command that imports
torch and stops at once (``harp report`` of a folder that does not exist). The medians are reported with
their ratio to ``import torch``, and how often each command imported torch (``-X importtime``): the helps
never, the real command once (the thread policy no longer starts the command again).
Target: every help <= 0.5 x ``import torch``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harp_prune.cli import COMMANDS

RESULTS = Path(__file__).resolve().parent / "results" / "cli_startup.json"


def timed(arguments: list[str], environment: dict[str, str]) -> tuple[float, int]:
    """Seconds one interpreter takes for ``arguments``, and how many times it imported torch."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-X", "importtime", *arguments], capture_output=True, text=True,
                          env=environment, check=False)
    seconds = time.perf_counter() - start
    torch_loads = sum(1 for line in done.stderr.splitlines()
                      if line.startswith("import time:") and line.rsplit("|", 1)[1].strip() == "torch")
    return seconds, torch_loads


def cases(cache: Path, empty: Path) -> dict[str, tuple[list[str], Path]]:
    """Each measured case: its interpreter arguments and the flag-table cache folder it runs with."""
    harp = ["-m", "harp_prune"]
    out = {"import torch": (["-c", "import torch"], cache), "harp --help": ([*harp, "--help"], cache)}
    out.update({f"harp {name} --help": ([*harp, name, "--help"], cache) for name in COMMANDS})
    out["harp run --help (empty cache)"] = ([*harp, "run", "--help"], empty)
    out["harp report (a real command)"] = ([*harp, "report", str(empty / "absent")], cache)
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        cache, empty = Path(folder) / "cache", Path(folder) / "empty"
        base = {**os.environ, "HARP_CACHE_DIR": str(cache)}
        subprocess.run([sys.executable, "-m", "harp_prune", "run", "--help"], env=base, capture_output=True,
                       check=True)  # fills the cache
        measured = cases(cache, empty)
        names = list(measured)
        seconds: dict[str, list[float]] = {name: [] for name in names}
        loads: dict[str, int] = {}
        for round_ in range(args.repeats):
            for name in names[round_ % len(names):] + names[:round_ % len(names)]:
                arguments, cache_dir = measured[name]
                for stale in empty.glob("*"):  # the empty-cache case starts empty every time
                    stale.unlink()
                took, loads[name] = timed(arguments, {**base, "HARP_CACHE_DIR": str(cache_dir)})
                seconds[name].append(took)
    torch_seconds = statistics.median(seconds["import torch"])
    rows = {name: {"median_s": round(statistics.median(values), 3), "runs_s": [round(v, 3) for v in values],
                   "versus_import_torch": round(statistics.median(values) / torch_seconds, 3),
                   "torch_imports": loads[name]} for name, values in seconds.items()}
    report = {"python": sys.version.split()[0], "repeats": args.repeats, "cpus": os.cpu_count(), "rows": rows,
              "helps_within_half_of_import_torch": all(  # the helps with a cached flag table
                  row["versus_import_torch"] <= 0.5 and row["torch_imports"] == 0
                  for name, row in rows.items() if name.endswith("--help"))}
    width = max(map(len, rows))
    for name, row in rows.items():
        print(f"{name:<{width}}  {row['median_s']:7.3f} s  {row['versus_import_torch']:6.3f} x import torch  "
              f"torch imported {row['torch_imports']}x")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"-> {args.output}")
    return report


if __name__ == "__main__":
    main()
