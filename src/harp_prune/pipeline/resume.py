"""What a resumed stage must share with the run that wrote its checkpoints: the settings that shape its result and
the model. Checked for every stage a command resumes before the command writes anything (its config.yaml)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harp_prune.config import RunConfig
from harp_prune.errors import HarpError
from harp_prune.records import refuse_changed_settings
from harp_prune.training import load_checkpoint

# The settings that shape each stage's result: a checkpoint made under other values of these is refused on
# resume. Left out: where and how a run executes or reports (device, out_dir, progress, channels_last,
# compile, data loader workers and evaluation batch size) and what happens after the stage (evaluate, compare).
_SHARED_KEYS = ("model", "seed", "select_on", "amp", "sync_bn", "data", "attack", "pretrain")
RESULT_KEYS = {"pretrain": _SHARED_KEYS, "prune": (*_SHARED_KEYS, "prune"),
               "finetune": (*_SHARED_KEYS, "prune", "finetune")}
RESULT_NEUTRAL_KEYS = ("data.workers", "data.eval_batch_size")


def check_checkpoint_model(checkpoint: dict[str, Any], path: Path, config: RunConfig, model_given: bool) -> None:
    """Without a model of the caller's, the checkpoint must hold the zoo model the config names."""
    if model_given:
        return
    name = checkpoint["model_spec"].get("name")
    if name is None:
        raise HarpError(f"{path} holds a user-defined architecture (made by hp.run(model=...)), which the model zoo "
                        "cannot rebuild; continue with 'harp run --resume --model-factory module:function' (a "
                        "function returning that architecture) or hp.run(config, model=..., resume=True)")
    if name != config.model:
        raise HarpError(f"{path} holds a '{name}' model but the config asks for '{config.model}'; "
                        f"pass --model {name} or another checkpoint")


def refuse_changed_stage(config: RunConfig, stage: str, path: Path, checkpoint: dict[str, Any]) -> None:
    """Refuse to resume ``stage`` from ``checkpoint`` if it was made under other values of the stage's
    ``RESULT_KEYS``."""
    refuse_changed_settings(checkpoint.get("config"), config.to_dict(), RESULT_KEYS[stage], RESULT_NEUTRAL_KEYS,
                            path, RunConfig().to_dict())


def check_resumable(config: RunConfig, stages: tuple[str, ...], model_given: bool) -> None:
    """Every checkpoint that resuming ``stages`` in ``config.out_dir`` would take (a final.pt) or continue from
    (a last.pt) was made with today's model and settings: otherwise the refusal comes before anything is
    written, not after config.yaml has been rewritten with settings none of the checkpoints were made with."""
    for stage in stages:
        folder = Path(config.out_dir) / stage
        path = next((p for p in (folder / "final.pt", folder / "last.pt") if p.is_file()), None)
        if path is not None:
            checkpoint = load_checkpoint(path)
            check_checkpoint_model(checkpoint, path, config, model_given)
            refuse_changed_stage(config, stage, path, checkpoint)
