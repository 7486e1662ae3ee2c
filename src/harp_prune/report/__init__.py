"""`harp report`: one self-contained HTML page (``report.html``, its PNGs embedded and also written beside it)
for a run directory (``results.json`` and ``metrics.jsonl``) or a `harp compare` directory (``compare.json``).

The page is drawn from the JSON files alone, so it can be made again at any time, also for a run still
training (its curves so far) and on a machine without the run's checkpoints.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harp_prune.errors import HarpError
from harp_prune.files import write_atomic
from harp_prune.progress import log
from harp_prune.report.compare_page import compare_page
from harp_prune.report.figures import INSTALL_HINT, plotting_available
from harp_prune.report.run_page import run_page
from harp_prune.training import METRICS_FILE, read_metrics

REPORT_FILE = "report.html"

__all__ = ["REPORT_FILE", "plotting_available", "write_report", "write_report_if_plotting"]


# the top-level entries each page reads, with their JSON types: a file edited or written by another tool is
# refused by name here rather than failing somewhere inside the drawing
RUN_ENTRIES = {"config": dict, "dense": dict, "pruned": dict, "history": dict, "wall_seconds": int | float}
COMPARE_ENTRIES = {"summary": list, "dense": dict, "config": dict, "strategies": dict, "environment": dict,
                   "wall_seconds": int | float}
JSON_TYPES = {dict: "an object", list: "a list", int | float: "a number"}


def _read_json(path: Path, entries: dict[str, Any], command: str) -> dict[str, Any] | None:
    """The record in ``path`` (None when there is none), with each of its ``entries`` of the type the page reads."""
    if not path.exists():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise HarpError(f"{path} is not valid JSON ({error.msg} at line {error.lineno}); rerun the command "
                        "that wrote it") from None
    if not isinstance(record, dict):
        raise HarpError(f"{path} holds a JSON {type(record).__name__}, not the object '{command}' writes; restore "
                        f"the file or rerun '{command}'")
    for name, kind in entries.items():
        if not isinstance(record.get(name), kind):
            raise HarpError(f"{path} is not a '{command}' record: its '{name}' is missing or not {JSON_TYPES[kind]}; "
                            f"restore the file or rerun '{command}'")
    return record


def write_report(directory: str | Path) -> Path:
    """Write ``<directory>/report.html`` and its PNGs; returns the page's path.

    Example::

        import harp_prune as hp
        hp.run(hp.build_config(out_dir="runs/quick"))  # writes the report itself when matplotlib is installed
        from harp_prune.report import write_report
        write_report("runs/quick")
    """
    directory = Path(directory)
    if not plotting_available():
        raise HarpError(f"the report's plots need matplotlib, which is not installed; {INSTALL_HINT}")
    if not directory.is_dir():
        raise HarpError(f"{directory} is not a folder; pass the out_dir of a 'harp run' or 'harp compare'")
    comparison = _read_json(directory / "compare.json", COMPARE_ENTRIES, "harp compare")
    if comparison is not None:
        report, images = compare_page(comparison)
    else:
        results = _read_json(directory / "results.json", RUN_ENTRIES, "harp run")
        metrics = read_metrics(directory / METRICS_FILE)
        if results is None and not metrics:
            raise HarpError(f"{directory} holds no results.json, {METRICS_FILE} or compare.json; pass the out_dir "
                            "of a 'harp run' or 'harp compare'")
        report, images = run_page(results, metrics)
    for name, png in images.items():
        write_atomic(directory / name, png)
    return write_atomic(directory / REPORT_FILE, report.html())


def write_report_if_plotting(directory: str | Path) -> Path | None:
    """``write_report`` when matplotlib is installed (else a log line saying how to get the page)."""
    if not plotting_available():
        log(f"matplotlib is not installed ({INSTALL_HINT}), so no report.html; install it and run "
            f"'harp report {directory}'")
        return None
    path = write_report(directory)
    log(f"report: {path}")
    return path
