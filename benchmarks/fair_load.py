"""How much slower a `harp run` gets beside other work, with and without the command's thread policy.

    python benchmarks/fair_load.py            # a small run (about a minute alone on 2 idle cores), 6 scenarios
    python benchmarks/fair_load.py --quick    # a tiny run, seconds: checks the script

Each scenario starts `python -m harp_prune run` (a fresh process, so the OpenMP wait policy is chosen at its
start) and measures its wall time and CPU time: alone, beside one equal run (both timed; the slower counts),
and beside CPU burners (busy Python loops, one per ``--burners``). "policy on" is the command's default
(harp_prune/threads.py); "policy off" sets HARP_THREAD_POLICY=off, i.e. OpenMP's default spinning waits.
Printed and written as JSON: each scenario's seconds and its ratio to the same policy's run alone.
Target: beside an equal run <= 2.3 x alone (2 is the fair share of 2 cores). Run it on an idle machine.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from harp_prune.results import write_json

SOURCE = Path(__file__).resolve().parents[1] / "src"

SMALL_RUN = ["--no-progress", "--data-train-examples", "2000", "--data-test-examples", "500", "--pretrain-epochs", "2",
             "--prune-epochs", "2", "--finetune-epochs", "2", "--evaluate-eps-sweep", "none"]
TINY_RUN = ["--no-progress", "--data-train-examples", "200", "--data-test-examples", "50", "--attack-steps", "1",
            "--evaluate-pgd-steps", "1", "--pretrain-epochs", "1", "--prune-epochs", "1", "--finetune-epochs", "1",
            "--evaluate-eps-sweep", "none"]
BURNER = "while True: pass"


def environment(policy: bool) -> dict[str, str]:
    """This process's environment without thread settings, so that only the policy decides."""
    cleared = ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "HARP_THREAD_POLICY")
    env = {k: v for k, v in os.environ.items() if k not in cleared}
    env["PYTHONPATH"] = os.pathsep.join([str(SOURCE), *filter(None, [os.environ.get("PYTHONPATH")])])
    if not policy:
        env["HARP_THREAD_POLICY"] = "off"
    return env


def start_run(flags: list[str], policy: bool, out_dir: Path) -> subprocess.Popen:
    out_dir.mkdir(parents=True)
    with open(out_dir / "log.txt", "wb") as log:  # a file, not a pipe nobody reads while the run goes on
        return subprocess.Popen([sys.executable, "-m", "harp_prune", "run", *flags, "--out-dir", str(out_dir)],
                                env=environment(policy), stdout=log, stderr=subprocess.STDOUT)


def finish(process: subprocess.Popen, started: float, out_dir: Path) -> dict[str, float]:
    """Wall and CPU seconds (user + system, the restarted command's included) of a finished run."""
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"harp run failed ({process.returncode}): {(out_dir / 'log.txt').read_text()[-2000:]}")
    cpu = usage.ru_utime + usage.ru_stime
    return {"wall_seconds": wall, "cpu_seconds": cpu, "cpu_per_wall": cpu / wall}


def scenario(name: str, flags: list[str], policy: bool, burners: int, work: Path) -> dict[str, Any]:
    """Run the scenario ``name`` (alone, beside an equal run, beside burners); the timed run's figures."""
    hogs = [subprocess.Popen([sys.executable, "-c", BURNER]) for _ in range(burners if name == "burner" else 0)]
    try:
        started = time.perf_counter()
        out_dirs = [work / f"{name}-policy-{'on' if policy else 'off'}-{i}" for i in range(2 if name == "equal" else 1)]
        runs = [start_run(flags, policy, out_dir) for out_dir in out_dirs]
        figures = [finish(run, started, out_dir) for run, out_dir in zip(runs, out_dirs, strict=True)]
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    return max(figures, key=lambda f: f["wall_seconds"])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tiny run (seconds), to check the script")
    parser.add_argument("--burners", type=int, default=1, help="busy processes beside the run")
    parser.add_argument("--scenarios", default="alone,equal,burner", help="which of alone, equal, burner (alone first)")
    parser.add_argument("--policies", default="on,off", help="with the thread policy (on), without (off), or both")
    parser.add_argument("--output", default="benchmarks/results/fair_load.json")
    args = parser.parse_args(argv)
    scenarios = args.scenarios.split(",")
    if scenarios[0] != "alone" or not set(scenarios) <= {"alone", "equal", "burner"}:
        raise SystemExit(f"--scenarios: alone first, then any of equal, burner; got '{args.scenarios}'")
    flags = TINY_RUN if args.quick else SMALL_RUN
    results: dict[str, Any] = {"flags": flags, "burners": args.burners, "cpus": os.cpu_count(), "scenarios": {}}
    with tempfile.TemporaryDirectory() as work:
        for policy in (choice == "on" for choice in args.policies.split(",")):
            label = "policy on" if policy else "policy off"
            rows = {name: scenario(name, flags, policy, args.burners, Path(work)) for name in scenarios}
            for name, row in rows.items():
                row["versus_alone"] = row["wall_seconds"] / rows["alone"]["wall_seconds"]
                print(f"{label:<10} {name:<7} {row['wall_seconds']:8.1f} s wall {row['cpu_seconds']:8.1f} s CPU "
                      f"{row['versus_alone']:6.2f} x alone", flush=True)
            results["scenarios"][label] = rows
    write_json(results, Path(args.output))
    return results


if __name__ == "__main__":
    main()
