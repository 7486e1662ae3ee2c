"""Per-epoch metrics as they happen: one JSON line per epoch in ``<out_dir>/metrics.jsonl`` (and TensorBoard).

``run_stage`` hands every epoch's history row to the sink, so a user can follow or plot a run while it trains
(``tail -f``, pandas, ``harp report``). A line is the history row with the stage's name added. A stage that
starts at epoch ``k`` (afresh: 0; resumed: the first unfinished epoch) first drops that stage's line for
epoch ``k`` and every line after it: they belong to the attempt being redone, so the file never holds an epoch
twice. TensorBoard gets the same scalars, one run per stage, under ``<out_dir>/tensorboard/<stage>``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from harp_prune.errors import HarpError
from harp_prune.files import write_atomic

METRICS_FILE = "metrics.jsonl"


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The lines of a metrics file; a line cut short (the run was killed while writing it) is left out, a line
    that is JSON but not an epoch's record (written by something else) is an error naming it."""
    return list(_parsed_lines(path, path.read_text(encoding="utf-8"))) if path.exists() else []


def _parsed_lines(path: Path, text: str) -> Iterator[dict[str, Any]]:
    for number, line in enumerate(text.splitlines(), 1):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not (isinstance(row, dict) and isinstance(row.get("stage"), str) and isinstance(row.get("epoch"), int)):
            raise HarpError(f"{path} line {number} is not an epoch's record (an object with 'stage' and 'epoch'): "
                            f"{line[:40]!r}; remove that line, or the file to start its curves afresh")
        yield row


class EpochLog:
    """Writes one stage's epochs: a line each in the metrics file, and scalars to TensorBoard when asked."""

    def __init__(self, stage: str, stream: TextIO, tensorboard: Any | None):
        self.stage, self._stream, self._tensorboard = stage, stream, tensorboard

    def __call__(self, row: dict[str, Any]) -> None:
        self._stream.write(json.dumps({"stage": self.stage, **row}, default=float) + "\n")
        self._stream.flush()  # readable while the run goes on
        if self._tensorboard is not None:
            for name, value in row.items():
                if name != "epoch" and isinstance(value, int | float):
                    self._tensorboard.add_scalar(name, value, row["epoch"])
            self._tensorboard.flush()

    def close(self) -> None:
        self._stream.close()
        if self._tensorboard is not None:
            self._tensorboard.close()


class MetricsLog:
    """The sink ``StageSettings.metrics`` takes: ``open(stage, first_epoch)`` gives the stage's ``EpochLog``."""

    def __init__(self, out_dir: Path, tensorboard: bool = False):
        self.path, self.tensorboard_dir = out_dir / METRICS_FILE, out_dir / "tensorboard"
        self._summary_writer = _summary_writer_class() if tensorboard else None

    def open(self, stage: str, first_epoch: int) -> EpochLog:
        lines = read_metrics(self.path)
        redone = next((i for i, line in enumerate(lines)
                       if line.get("stage") == stage and line.get("epoch", -1) >= first_epoch), len(lines))
        write_atomic(self.path, "".join(json.dumps(line) + "\n" for line in lines[:redone]))
        tensorboard = None
        if self._summary_writer is not None:  # purge_step drops the events of epochs being redone
            tensorboard = self._summary_writer(log_dir=str(self.tensorboard_dir / stage), purge_step=first_epoch)
        return EpochLog(stage, self.path.open("a", encoding="utf-8"), tensorboard)


def _summary_writer_class() -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise HarpError("tensorboard logging was asked for (run.tensorboard) but the tensorboard package is not "
                        "installed; pip install tensorboard, or drop --tensorboard") from None
    return SummaryWriter
