"""Where the wall time of a `harp run` goes: per-phase seconds and shares, as JSON.

    OMP_NUM_THREADS=1 python benchmarks/profile_run.py                    # the default run (minutes)
    python benchmarks/profile_run.py --set pretrain.epochs=1 --set prune.epochs=1 --set finetune.epochs=1 \\
        --set data.train_examples=200 --set data.test_examples=100 --output /tmp/profile.json   # a quick check

Timers wrap the pipeline's own functions (nothing in the library changes): the training epochs of each stage,
the per-epoch validation on the selection split (natural and attacked), the checkpoint writes, the final
evaluations (natural + PGD-k on the test split, dense and pruned) and the eps sweep. What no timer covers
(data loading, model building, the budget projection, writing results) is reported as ``other``.
"""

from __future__ import annotations

import argparse
import functools
import resource
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch

import harp_prune.pipeline.evaluation as pipeline_evaluation
import harp_prune.pipeline.stages as pipeline_stages
import harp_prune.training.stage as training_stage
from harp_prune import build_config, run
from harp_prune.results import write_json


class PhaseClock:
    """Seconds and call counts per phase; the stage being trained names the training-time phases."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.stage = "outside a stage"
        self.evaluations = 0

    def timed(self, function: Callable, phase: Callable[..., str]) -> Callable:
        """``function`` with its wall time added to ``phase(*args, **kwargs)``."""

        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            name = phase(*args, **kwargs)
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - started
                self.calls[name] += 1

        return wrapper

    def install(self) -> None:
        """Wrap the functions where the modules that call them look them up."""

        def entering_stage(settings, *args: Any, **kwargs: Any) -> str:
            self.stage = settings.name
            return f"{settings.name}: stage total"

        def evaluation_of(*args: Any, **kwargs: Any) -> str:
            self.evaluations += 1
            return f"final evaluation {('dense', 'pruned')[min(self.evaluations, 2) - 1]}: natural + attacks"

        def validation(model, loader, device, attack=None, *args: Any, **kwargs: Any) -> str:
            return f"{self.stage}: validation {'attacked' if attack is not None else 'natural'}"

        pipeline_stages.run_stage = self.timed(training_stage.run_stage, entering_stage)
        def in_stage(part: str) -> Callable[..., str]:
            return lambda *args, **kwargs: f"{self.stage}: {part}"

        training_stage.train_epoch = self.timed(training_stage.train_epoch, in_stage("training"))
        training_stage.accuracy = self.timed(training_stage.accuracy, validation)
        training_stage.save_atomic = self.timed(training_stage.save_atomic, in_stage("checkpoints"))
        pipeline_evaluation.evaluate_model = self.timed(pipeline_evaluation.evaluate_model, evaluation_of)
        pipeline_evaluation.sanity_section = self.timed(
            pipeline_evaluation.sanity_section,
            lambda *a, **k: f"final evaluation {('dense', 'pruned')[min(self.evaluations, 2) - 1]}: eps sweep")


def report(clock: PhaseClock, wall: float) -> dict[str, Any]:
    """Per-phase seconds and shares of ``wall``; a stage's total is split into its parts plus its rest."""
    phases = {name: seconds for name, seconds in clock.seconds.items() if not name.endswith("stage total")}
    for name, seconds in clock.seconds.items():
        if name.endswith("stage total"):
            stage = name.split(":")[0]
            inside = sum(s for n, s in phases.items() if n.startswith(f"{stage}:"))
            phases[f"{stage}: rest of the stage"] = seconds - inside
    phases["other (data, models, budget projection, results)"] = wall - sum(phases.values())
    return {"wall_seconds": wall, "threads": torch.get_num_threads(),
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "phases": {name: {"seconds": seconds, "share": seconds / wall, "calls": clock.calls.get(name, 0)}
                       for name, seconds in sorted(phases.items(), key=lambda item: -item[1])}}


def parse_settings(pairs: list[str]) -> dict[str, str]:
    settings = {}
    for pair in pairs:
        key, separator, value = pair.partition("=")
        if not separator:
            raise SystemExit(f"--set takes key=value (e.g. prune.epochs=1), got '{pair}'")
        settings[key] = value
    return settings


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a config key of the run (repeatable); none: the default run")
    parser.add_argument("--output", default="benchmarks/results/profile_run.json")
    args = parser.parse_args(argv)
    clock = PhaseClock()
    clock.install()
    with tempfile.TemporaryDirectory() as out_dir:
        config = build_config(None, {"out_dir": out_dir, "progress": "false", **parse_settings(args.set)})
        started = time.perf_counter()
        results = run(config)
        wall = time.perf_counter() - started
    profile = {**report(clock, wall), "settings": args.set,
               "accuracy": {model: {"natural": results[model]["natural_acc"], "robust": results[model]["robust_acc"]}
                            for model in ("dense", "pruned")}}
    for name, phase in profile["phases"].items():
        print(f"{phase['share']:7.1%} {phase['seconds']:8.1f} s  {phase['calls']:4d} calls  {name}")
    print(f"wall {wall:.1f} s, {profile['threads']} threads, peak RSS {profile['peak_rss_mib']:.0f} MiB")
    write_json(profile, Path(args.output))
    return profile


if __name__ == "__main__":
    main()
