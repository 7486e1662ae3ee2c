"""The paper's full-width networks through the compare-resnet comparison, on one GPU in under 10 minutes.

`harp compare --config compare-resnet` (Fashion-MNIST, PGD-3 adversarial training at eps 0.1, selection on a
validation split, seeds 0 and 1, PGD-20 on 2,000 test images) for the full-width ``resnet18`` and ``vgg16_bn``,
both at once on one device, with 10 pruning epochs on 4,000 training images:

1. one ``harp compare`` per model (``<out>/<model>``): harp (the default), harp-paper (the paper's mechanics),
   hydra:lamp and frontier at 99.9 % and 99 % sparsity, seeds 0 and 1 (16 cells per model, all at once as
   ``--compare-jobs`` worker processes sharing the GPU; the 99.9 % column comes first);
2. AutoAttack (standard, ``benchmarks/autoattack_cells.py``, 500 test images) on the decisive cells only: as
   soon as every cell of a (model, sparsity) column has finished (or, once the model's compare has ended with
   some cells failed, those that did), the three methods with the highest mean PGD-20 over the seeds, both
   seeds, one process per method (``<out>/autoattack-selection.json`` records the ranking);
3. with ``--s2ap-rho R`` (off by default since the 10-epoch grid), once a model's grid has ended, if time is
   left: S2AP cells for harp, hydra:lamp and frontier at 99.9 %, seed 0, in ``<out>/<model>-s2ap-<rho>``
   (compare caches cells by path, so they get their own out dir, with a copy of the model's ``pretrain/`` and
   ``dense.json``).

Everything still running at the deadline (``--seconds``, default 540) is killed with its worker processes.
Finished cells and AutoAttack results are cached, so running the same command again continues. At the end the
small result files (compare.json/.md, PNGs, config.yaml, dense.json, autoattack-*.json and their table, the logs)
are copied into ``benchmarks/results/compare-paper-gpu/`` (``--results-dir``).

Setup on the GPU machine (no internet: torch with CUDA and the dependencies are installed already), then the
run, from the repository root::

    pip install --no-deps --no-build-isolation -e ".[autoattack]"   # or pip install -e ".[autoattack]" online
    python benchmarks/compare_paper_gpu.py --data-root DIR

``DIR`` holds the Fashion-MNIST IDX files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz,
t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz; default /usr/share/datasets/fashion-mnist). The script
stops before starting anything if they are missing. ``--dataset fashion-mnist-small`` uses the class-balanced
subset embedded in the package instead (10k training, 2k test images; no files needed), a smaller data set
than the CPU grid's. ``--tiny`` runs a few-minute CPU smoke version (small_cnn and small_cnn_wide, 300 training
images, one epoch per stage but two pruning epochs, harp and harp-paper, seed 0, PGD-2 on 100 images,
AutoAttack on 20); ``--dry-run`` prints the plan and the commands and runs nothing.

Sizing of the 10-epoch grid (not yet run on a GPU): on one H200 14 resnet18 cells of 10 pruning epochs on
8,000 images took 399 s and pre-training 40 s; halving the training images and running 16 cells per model
for two models at once is planned to fit the 540-second deadline, AutoAttack following in a second call.

Time, as measured on one H200 (2026-11-30; benchmarks/results/compare-paper-gpu/README.md has the run): pre-training
takes 2.2 s an epoch for resnet18 and 1.5 s for vgg16_bn (both at once), ~25 s in all. With 14 cells per model at a
time the one-shot cells (lamp, global-magnitude) took 54-87 s, the learned ones 90-202 s, and frontier's 278-440 s,
before its budget projection stopped reading every layer's keep-ratio back from the device at each of its ~60
bisection steps (benchmarks/projection_reads.py): with 28 processes sharing the GPU each read waited for the
queue. resnet18's whole grid ended after ~8.5 minutes. The SMs were busy 99-100 % of the time (nvidia-smi dmon).
AutoAttack on 500 images did not finish a cell in the 1-2 minutes left of a 540-second call: the grid fills one
call, and a second call with the same command (cells are cached) runs the AutoAttack of the decisive cells and
the S2AP cells. ``--amp`` (bf16 autocast in training; evaluation stays fp32) would shorten the training part,
at the cost of a numeric setting the CPU grids did not use; it was not needed for the grid to fit.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

BENCHMARKS = Path(__file__).resolve().parent
REPO = BENCHMARKS.parent
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(BENCHMARKS))

from autoattack_cells import report as autoattack_report  # noqa: E402  (the benchmarks folder is not a package)
from autoattack_cells import result_name  # noqa: E402

from harp_prune.compare import Cell, grid  # noqa: E402
from harp_prune.config import RunConfig, build_config, read_yaml  # noqa: E402
from harp_prune.data import load_dataset  # noqa: E402
from harp_prune.errors import HarpError  # noqa: E402
from harp_prune.presets import resolve_config_file  # noqa: E402

PRESET = "compare-resnet"
# harp (the default), the paper's mechanics, the best fixed allocation and harp-prune's frontier
PAPER_METHODS = "harp,harp-paper,hydra:lamp,frontier"
S2AP_METHODS = "harp,hydra:lamp,frontier"


@dataclass(frozen=True)
class Profile:
    """What one run of the script does: the models, the settings every ``harp compare`` gets on top of the
    preset, the S2AP cells, and the AutoAttack selection."""

    models: tuple[str, ...]
    settings: dict[str, Any]
    s2ap_methods: str
    s2ap_sparsities: str
    s2ap_seeds: str
    top: int  # AutoAttack on this many methods per (model, sparsity)
    autoattack_examples: int
    seconds: int
    results_dir: Path | None  # None: <out>/results
    poll_seconds: float = 5.0


PAPER_GPU = Profile(
    models=("resnet18", "vgg16_bn"),
    settings={
        "device": "cuda", "progress": False, "data.dataset": "fashion-mnist", "data.train_examples": 4000,
        "data.val_fraction": 0.02, "data.test_examples": 2000, "pretrain.epochs": 8, "prune.epochs": 10,
        "finetune.epochs": 1, "evaluate.pgd_steps": 20, "evaluate.sanity_examples": 200,
        "compare.methods": PAPER_METHODS, "compare.sparsities": "0.999,0.99", "compare.seeds": "0,1",
        "compare.jobs": 16,  # all of a model's 16 cells at once: 10 pruning epochs of 31 steps each
    },
    s2ap_methods=S2AP_METHODS, s2ap_sparsities="0.999", s2ap_seeds="0", top=3, autoattack_examples=500,
    seconds=540, results_dir=REPO / "benchmarks" / "results" / "compare-paper-gpu",
)
# a few minutes on one CPU thread: the same steps, on small models and a few hundred images
TINY_CPU = Profile(
    models=("small_cnn", "small_cnn_wide"),
    settings={
        "device": "cpu", "progress": False, "data.dataset": "fashion-mnist", "data.train_examples": 300,
        "data.val_fraction": 0.01, "data.test_examples": 100, "pretrain.epochs": 1, "prune.epochs": 2,
        "finetune.epochs": 1, "evaluate.pgd_steps": 2, "evaluate.sanity_examples": 50,
        "compare.methods": "harp,harp-paper", "compare.sparsities": "0.999,0.99", "compare.seeds": "0",
        "compare.jobs": 2,
    },
    s2ap_methods="harp", s2ap_sparsities="0.999", s2ap_seeds="0", top=3, autoattack_examples=20,
    seconds=600, results_dir=None, poll_seconds=2.0,
)


def cli_flags(settings: dict[str, Any]) -> list[str]:
    """``{"data.train_examples": 8000, "progress": False}`` -> ``--data-train-examples 8000 --no-progress``."""
    flags: list[str] = []
    for key, value in settings.items():
        name = key.replace(".", "-").replace("_", "-")
        if isinstance(value, bool):
            flags.append(f"--{name}" if value else f"--no-{name}")
        else:
            flags += [f"--{name}", str(value)]
    return flags


@dataclass
class CompareRun:
    """One ``harp compare`` of the plan: its out dir, settings, config (built here as the command line will
    build it, so the plan is checked before anything starts) and cells."""

    name: str
    root: Path
    settings: dict[str, Any]
    config: RunConfig = field(init=False)
    cells: list[Cell] = field(init=False)

    def __post_init__(self) -> None:
        values = {key: str(value).lower() if isinstance(value, bool) else str(value)
                  for key, value in self.settings.items()}
        self.config = build_config(read_yaml(resolve_config_file(PRESET)), {**values, "out_dir": str(self.root)})
        self.cells = grid(self.config)

    def command(self) -> list[str]:
        return [sys.executable, "-m", "harp_prune", "compare", "--config", PRESET, "--out-dir", str(self.root),
                *cli_flags(self.settings)]

    def columns(self) -> dict[float, list[Cell]]:
        """The cells by sparsity, in grid order."""
        columns: dict[float, list[Cell]] = {}
        for cell in self.cells:
            columns.setdefault(cell.sparsity, []).append(cell)
        return columns

    @property
    def metric(self) -> str:
        """The robust accuracy the cells report (``pgd20``): the ranking's key."""
        return f"pgd{self.config.evaluate.pgd_steps}"


@dataclass
class Plan:
    main: list[CompareRun]
    s2ap: dict[str, CompareRun]  # by the name of the main run whose pre-trained model it reuses
    profile: Profile
    out: Path
    device: str


def make_plan(args: argparse.Namespace) -> Plan:
    profile = TINY_CPU if args.tiny else PAPER_GPU
    if args.seconds:
        profile = replace(profile, seconds=args.seconds)
    models = tuple(args.models.split(",")) if args.models else profile.models
    shared = {**profile.settings, "data.dataset": args.dataset, "data.root": str(args.data_root)}
    if args.device:
        shared["device"] = args.device
    if args.jobs:
        shared["compare.jobs"] = args.jobs
    if args.train_examples:
        shared["data.train_examples"] = args.train_examples
    if args.pretrain_epochs:
        shared["pretrain.epochs"] = args.pretrain_epochs
    if args.amp:
        shared["amp"] = True
    out = args.out_dir.resolve()  # the jobs run in the repository root
    main, s2ap = [], {}
    for model in models:
        run = CompareRun(model, out / model, {"model": model, **shared})
        main.append(run)
        if args.s2ap_rho > 0:
            name = f"{model}-s2ap-{args.s2ap_rho:g}"
            s2ap[model] = CompareRun(name, out / name,
                                     {**run.settings, "compare.methods": profile.s2ap_methods,
                                      "compare.sparsities": profile.s2ap_sparsities,
                                      "compare.seeds": profile.s2ap_seeds, "prune.s2ap_rho": args.s2ap_rho})
    return Plan(main, s2ap, profile, out, shared["device"])


def folder_name(cell: Cell, root: Path) -> str:
    """The name autoattack_cells.py takes for a cell's method (``hydra-lamp`` for hydra:lamp)."""
    return cell.path(root).parent.parent.name


def ranking(run: CompareRun, cells: list[Cell], ended: bool = False) -> list[tuple[str, float]] | None:
    """The methods of ``cells`` by mean robust accuracy over their seeds, best first; None until all finished.

    Once the compare has ``ended`` (a cell that failed will not finish; compare runs the others to the end),
    the finished cells are ranked, and None only when none finished.
    """
    accuracies: dict[str, list[float]] = {}
    for cell in cells:
        done = cell.path(run.root) / "result.json"
        if not done.exists():
            if ended:
                continue
            return None
        robust = json.loads(done.read_text())["evaluation"]["robust_acc"][run.metric]
        accuracies.setdefault(folder_name(cell, run.root), []).append(robust)
    if not accuracies:
        return None
    return sorted(((name, statistics.fmean(values)) for name, values in accuracies.items()), key=lambda m: -m[1])


def autoattack_command(plan: Plan, run: CompareRun, method: str, sparsity: float) -> list[str]:
    examples = str(plan.profile.autoattack_examples)
    return [sys.executable, str(BENCHMARKS / "autoattack_cells.py"), str(run.root), "--methods", method,
            "--sparsities", f"{sparsity:g}", "--seeds", run.config.compare.seeds, "--device", plan.device,
            "--examples", examples, "--eval-batch-size", examples]


class Jobs:
    """Background commands, each in a process group of its own, so that stopping one also stops the worker
    processes it spawned (compare's cells); each logs to ``<logs>/<name>.log``."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.running: dict[str, tuple[subprocess.Popen, TextIO]] = {}
        self.exit_codes: dict[str, int | str] = {}
        # the repository's code, also where an installed copy of harp-prune is older
        self.environment = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(REPO / "src"), *filter(None, [os.environ.get("PYTHONPATH")])])}

    def start(self, name: str, command: list[str]) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        stream = open(self.logs / f"{name}.log", "a", buffering=1)  # noqa: SIM115  (closed when the job ends)
        process = subprocess.Popen(command, stdout=stream, stderr=subprocess.STDOUT, cwd=REPO,
                                   env=self.environment, start_new_session=True)
        self.running[name] = (process, stream)
        say(f"started {name}: {' '.join(command)}")

    def poll(self) -> None:
        for name, (process, _) in list(self.running.items()):
            if process.poll() is not None:
                self._ended(name, process.returncode)
                say(f"{name} ended with exit code {process.returncode}")

    def stop_all(self) -> None:
        """Kill every running job with its process group (the deadline)."""
        for name, (process, _) in list(self.running.items()):
            with_group_killed(process)
            self._ended(name, "killed at the deadline")
            say(f"{name} killed at the deadline")

    def _ended(self, name: str, code: int | str) -> None:
        _, stream = self.running.pop(name)
        stream.close()
        self.exit_codes[name] = code


def with_group_killed(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):  # it ended on its own meanwhile
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def say(message: str) -> None:
    print(f"[compare_paper_gpu] {time.strftime('%H:%M:%S')} {message}", flush=True)


def copy_pretrained(source: CompareRun, target: CompareRun) -> None:
    """The S2AP run reuses the main run's dense model and its evaluation instead of recomputing them."""
    target.root.mkdir(parents=True, exist_ok=True)
    if not (target.root / "pretrain").exists():
        shutil.copytree(source.root / "pretrain", target.root / "pretrain")
    if not (target.root / "dense.json").exists() and (source.root / "dense.json").exists():
        shutil.copy2(source.root / "dense.json", target.root / "dense.json")


def run(plan: Plan) -> dict[str, Any]:
    """Start the compares, then AutoAttack and S2AP as their prerequisites finish, until all ended or the
    deadline; returns the AutoAttack selection."""
    deadline = time.monotonic() + plan.profile.seconds
    jobs = Jobs(plan.out / "logs")
    selection: dict[str, dict[str, list[dict[str, Any]]]] = {}
    unranked = [(run, sparsity, cells) for run in plan.main for sparsity, cells in run.columns().items()]
    s2ap_waiting = dict(plan.s2ap)
    for compare in plan.main:
        jobs.start(compare.name, compare.command())
    try:
        while time.monotonic() < deadline:
            jobs.poll()
            for column in list(unranked):
                compare, sparsity, cells = column
                ended = compare.name in jobs.exit_codes
                ranked = ranking(compare, cells, ended)
                if ranked is None:
                    if ended:  # nothing of this column finished: no AutoAttack for it
                        unranked.remove(column)
                        say(f"no AutoAttack for {compare.name} at {sparsity:g}: none of its cells finished")
                    continue
                unranked.remove(column)
                chosen = ranked[:plan.profile.top]
                selection.setdefault(compare.name, {})[f"{sparsity:g}"] = [
                    {"method": name, f"mean_{compare.metric}": accuracy} for name, accuracy in chosen]
                (plan.out / "autoattack-selection.json").write_text(json.dumps(selection, indent=2) + "\n")
                for name, _ in chosen:
                    jobs.start(f"autoattack-{compare.name}-{name}-{sparsity:g}",
                               autoattack_command(plan, compare, name, sparsity))
            for name, s2ap in list(s2ap_waiting.items()):
                source = next(r for r in plan.main if r.name == name)
                # the S2AP cells need the model's pre-training, not every one of its cells
                if name in jobs.exit_codes and (source.root / "pretrain" / "final.pt").exists():
                    del s2ap_waiting[name]
                    copy_pretrained(source, s2ap)
                    jobs.start(s2ap.name, s2ap.command())
            if not jobs.running:
                break  # everything that could start has started and ended
            time.sleep(plan.profile.poll_seconds)
    finally:
        jobs.stop_all()
    for compare, sparsity, _ in unranked:
        say(f"no AutoAttack for {compare.name} at {sparsity:g}: its cells did not all finish")
    return {"selection": selection, "exit_codes": jobs.exit_codes}


def collect(plan: Plan, outcome: dict[str, Any], results: Path, seconds: float) -> None:
    """Copy the small result files into ``results`` (one folder per compare run, plus the logs)."""
    results.mkdir(parents=True, exist_ok=True)
    examples = plan.profile.autoattack_examples
    for compare in [*plan.main, *plan.s2ap.values()]:
        target = results / compare.name
        for name in ("compare.json", "compare.md", "config.yaml", "dense.json", "accuracy_vs_sparsity.png",
                     "layer_keep_ratios.png"):
            if (compare.root / name).exists():
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy2(compare.root / name, target / name)
        attacked = [cell.path(compare.root) for cell in compare.cells
                    if (cell.path(compare.root) / result_name(examples)).exists()]
        for cell in attacked:
            destination = target / cell.relative_to(compare.root)
            destination.mkdir(parents=True, exist_ok=True)
            shutil.copy2(cell / result_name(examples), destination / result_name(examples))
        if attacked:
            table = autoattack_report(compare.root, attacked, examples)
            (target / result_name(examples).replace(".json", ".md")).write_text(table + "\n")
    if (plan.out / "logs").exists():
        shutil.copytree(plan.out / "logs", results / "logs", dirs_exist_ok=True)
    summary = {**outcome, "wall_seconds": seconds, "deadline_seconds": plan.profile.seconds,
               "command": sys.argv}
    (results / "run.json").write_text(json.dumps(summary, indent=2) + "\n")
    say(f"results copied to {results}")


def describe(plan: Plan) -> str:
    """The plan in words and commands (``--dry-run``)."""
    lines = [f"out dir {plan.out}, deadline {plan.profile.seconds} s, device {plan.device}"]
    for compare in plan.main:
        lines += [f"compare {compare.name}: {len(compare.cells)} cells", "  " + " ".join(compare.command())]
        for sparsity, cells in compare.columns().items():
            methods = ",".join(dict.fromkeys(folder_name(cell, compare.root) for cell in cells))
            lines.append(f"  then AutoAttack on {plan.profile.autoattack_examples} images: the top "
                         f"{plan.profile.top} of {methods} at sparsity {sparsity:g} by mean {compare.metric} over "
                         f"seeds {compare.config.compare.seeds}, one process each:")
            lines.append("    " + " ".join(autoattack_command(plan, compare, "<method>", sparsity)))
        if compare.name in plan.s2ap:
            s2ap = plan.s2ap[compare.name]
            lines += [f"  then S2AP {s2ap.name}: {len(s2ap.cells)} cells, from {compare.root}/pretrain",
                      "    " + " ".join(s2ap.command())]
    return "\n".join(lines)


def check_ready(plan: Plan) -> None:
    """Stop before starting anything when the data, the GPU or pyautoattack is missing."""
    config = plan.main[0].config
    try:
        load_dataset(config.data.dataset, config.data.root)
    except HarpError as exc:
        raise SystemExit(f"compare_paper_gpu: data missing: {exc}\nPass --data-root DIR (the folder of the "
                         "Fashion-MNIST IDX files) or --dataset fashion-mnist-small (the subset embedded in "
                         "the package).") from None
    if plan.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("compare_paper_gpu: no CUDA device visible to torch; use --tiny (or --device cpu) "
                             "without a GPU")
    if importlib.util.find_spec("pyautoattack") is None:
        raise SystemExit("compare_paper_gpu: pyautoattack is missing: pip install -e \".[autoattack]\"")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out-dir", type=Path, default=Path("runs/compare-paper-gpu"))
    parser.add_argument("--data-root", type=Path, default=Path("/usr/share/datasets/fashion-mnist"),
                        help="the folder of the Fashion-MNIST IDX files")
    parser.add_argument("--dataset", default="fashion-mnist",
                        help="fashion-mnist (the IDX files in --data-root) or fashion-mnist-small (embedded subset)")
    parser.add_argument("--tiny", action="store_true", help="the few-minute CPU smoke version")
    parser.add_argument("--models", help="comma-separated zoo models (default: resnet18,vgg16_bn; tiny: small ones)")
    parser.add_argument("--device", help="overrides the profile's (cuda; tiny: cpu)")
    parser.add_argument("--seconds", type=int, help="the deadline (default 540; tiny 600)")
    parser.add_argument("--jobs", type=int, help="cells at a time per model (default 14; tiny 2)")
    parser.add_argument("--train-examples", type=int, help="training images (default 8000; tiny 300)")
    parser.add_argument("--pretrain-epochs", type=int,
                        help="dense pre-training epochs (default 8, as the CPU grid; vgg16_bn was still "
                             "under-trained after 8: use another --out-dir for another value)")
    parser.add_argument("--s2ap-rho", type=float, default=0.0,
                        help="S2AP's rho for extra cells, e.g. 0.01 as in the CPU grids (default 0: none)")
    parser.add_argument("--amp", action="store_true", help="bf16 autocast in training (faster, not the CPU grid's)")
    parser.add_argument("--results-dir", type=Path,
                        help="where the small result files go (default benchmarks/results/compare-paper-gpu; "
                             "tiny: <out-dir>/results)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and commands, run nothing")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    plan = make_plan(args)
    if args.dry_run:
        print(describe(plan))
        return
    check_ready(plan)
    started = time.monotonic()
    outcome = run(plan)
    results = args.results_dir or plan.profile.results_dir or plan.out / "results"
    collect(plan, outcome, results, time.monotonic() - started)


if __name__ == "__main__":
    main()
