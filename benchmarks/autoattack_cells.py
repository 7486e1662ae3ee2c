"""AutoAttack (standard, through pyautoattack) and PGD-20 on finished `harp compare` cells, after the fact.

`harp compare` evaluates every cell with the attacks of its config; AutoAttack on every cell of a large grid
costs far more than the training. This evaluates the fine-tuned model of chosen cells with AutoAttack on
the same test images the comparison used (its config's split) or a stratified subset of them (``--examples``),
and writes ``<cell>/autoattack.json`` (``autoattack-<examples>.json``). A cell with that file is skipped, so
the script resumes; ``--report`` prints the table. Example, the decisive cells of the full preset:

    python benchmarks/autoattack_cells.py runs/compare-full --methods harp,hydra-lamp --sparsities 0.99,0.999
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from harp_prune import pipeline
from harp_prune.config import build_config, read_yaml
from harp_prune.results import environment, write_json
from harp_prune.training import load_model


def result_name(examples: int | None) -> str:
    """One result file per test-image count, so runs on other subsets never mix."""
    return f"autoattack-{examples}.json" if examples is not None else "autoattack.json"


def evaluate_cells(root: Path, cells: list[Path], device: str, eval_batch_size: int,
                   examples: int | None) -> list[dict]:
    """PGD-20 and AutoAttack on each cell's ``finetune/final.pt``, with the compare run's threat model and
    split (or a stratified subset of ``examples`` test images, the same for every cell)."""
    overrides = {"evaluate.attacks": "pgd20,autoattack", "evaluate.eps_sweep": None, "device": device,
                 "data.eval_batch_size": eval_batch_size, "progress": False,
                 "out_dir": str(root / "autoattack-eval")}  # its config.yaml and AutoAttack state, not the compare's
    if examples is not None:
        overrides["data.test_examples"] = examples
    # the pruning settings are the cells' business (and a preset's carry options only some methods take)
    settings = {key: value for key, value in read_yaml(root / "config.yaml").items() if not key.startswith("prune.")}
    config = build_config(settings, overrides)
    ctx = pipeline.prepare(config)
    results = []
    for cell in cells:
        out = cell / result_name(examples)
        if out.exists():
            results.append(json.loads(out.read_text()))
            continue
        started = time.perf_counter()
        print(f"[autoattack] {cell.relative_to(root)}: started on {ctx.device}", flush=True)  # a cell takes minutes
        model, _, _ = load_model(cell / "finetune" / "final.pt", device=ctx.device)
        evaluation = pipeline.evaluate(config, model=model, ctx=ctx)
        robust = evaluation["robust_acc"]
        result = {"cell": str(cell.relative_to(root)), "natural_acc": evaluation["natural_acc"],
                  "pgd20_acc": robust["pgd20"], "autoattack_acc": robust["autoattack"],
                  "components": evaluation["attack_details"]["autoattack"]["components"],
                  "flags": evaluation["flags"], "examples": evaluation["examples"],
                  "seconds": time.perf_counter() - started, "environment": environment()}
        write_json(result, out)
        print(f"[autoattack] {result['cell']}: natural {100 * result['natural_acc']:.2f}, PGD-20 "
              f"{100 * result['pgd20_acc']:.2f}, AutoAttack {100 * result['autoattack_acc']:.2f} "
              f"({result['examples']} images, {result['seconds']:.0f} s)", flush=True)
        results.append(result)
    return results


def standard_error(accuracy: float, examples: int) -> float:
    """The binomial standard error of an accuracy measured on ``examples`` test images. Every seed is
    evaluated on the same images, so this part of the error does not shrink with more seeds."""
    return math.sqrt(max(accuracy * (1.0 - accuracy), 0.0) / examples)


def short_flag(flag: str) -> str:
    """AutoAttack's check, in a few words: 'Square -2.00 points' or '3 zero-gradient points'."""
    if square := re.search(r"Square Attack has decreased the robust accuracy of ([\d.]+)%", flag):
        return f"Square -{square.group(1)} points"
    if zero := re.search(r"there are (\d+) points with zero gradient", flag):
        return f"{zero.group(1)} zero-gradient points"
    return flag.removeprefix("autoattack: ")


def table_rows(results: list[dict]) -> list[str]:
    """One markdown row per method and sparsity of ``results`` (the records ``evaluate_cells`` writes): natural /
    PGD-20 / AutoAttack, the mean over seeds ± its test-set standard error, the spread (population std) over
    the seeds, and AutoAttack's flags."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for result in results:  # result["cell"] is cells/<method>/sparsity-<s>/seed-<n>
        _, method, sparsity, _ = Path(result["cell"]).parts
        groups.setdefault((method, sparsity.removeprefix("sparsity-")), []).append(result)
    rows = []
    for (method, sparsity), members in sorted(groups.items(), key=lambda item: (float(item[0][1]), item[0][0])):
        images = members[0]["examples"]

        def stat(key: str, members: list[dict] = members, images: int = images) -> str:
            values = [member[key] for member in members]
            mean = statistics.fmean(values)
            return (f"{100 * mean:.2f} ± {100 * standard_error(mean, images):.2f} "
                    f"[{100 * statistics.pstdev(values):.2f}]")

        flags = [f"seed {m['cell'].rsplit('seed-', 1)[-1]}: {', '.join(short_flag(f) for f in m['flags'])}"
                 for m in members if m["flags"]]
        rows.append(f"| {method} | {float(sparsity):.1%} | {len(members)} | {images} | "
                    f"{stat('natural_acc')} | {stat('pgd20_acc')} | {stat('autoattack_acc')} | "
                    f"{'; '.join(flags) or 'none'} |")
    return rows


def report(root: Path, cells: list[Path], examples: int | None) -> str:
    """Markdown: the table of ``table_rows`` over the cells that have a result on ``examples`` images."""
    results = [json.loads((cell / result_name(examples)).read_text()) for cell in cells
               if (cell / result_name(examples)).exists()]
    lines = [f"AutoAttack on cells of {root}: natural / PGD-20 / AutoAttack accuracy (%) on the same test images; "
             "mean over seeds ± its binomial standard error on that many images, [spread over seeds]", "",
             "| method | sparsity | seeds | images | natural | PGD-20 | AutoAttack | AutoAttack's flags |",
             "|---|---|---|---|---|---|---|---|", *table_rows(results)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", type=Path, help="the out dir of a harp compare run")
    parser.add_argument("--methods", default="harp", help="cell folder names, comma-separated (hydra-lamp, ...)")
    parser.add_argument("--sparsities", default="0.99,0.999")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--eval-batch-size", type=int, default=2000, help="one batch: fewer attack iterations")
    parser.add_argument("--examples", type=int, default=None,
                        help="a stratified subset of this many test images (default: the comparison's own)")
    parser.add_argument("--report", action="store_true", help="print the table of finished results; attack nothing")
    args = parser.parse_args()
    cells = [args.root / "cells" / method / f"sparsity-{float(s):g}" / f"seed-{int(seed)}"
             for method in args.methods.split(",") for s in args.sparsities.split(",")
             for seed in args.seeds.split(",")]
    if args.report:
        print(report(args.root, cells, args.examples))
        return
    finished = [c for c in cells if (c / "result.json").exists()]
    if len(finished) < len(cells):
        print(f"[autoattack] skipping unfinished cells (run harp compare first): "
              f"{', '.join(str(c) for c in cells if c not in finished)}", flush=True)
    evaluate_cells(args.root, finished, args.device, args.eval_batch_size, args.examples)


if __name__ == "__main__":
    main()
