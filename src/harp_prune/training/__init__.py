"""Training: objectives, the epoch loop, the stage runner with resume, and checkpoints."""

from harp_prune.training.checkpoint import check_state_dict, load_checkpoint, load_state_into, save_atomic
from harp_prune.training.loop import accuracy, cosine_lr, predictions, train_epoch
from harp_prune.training.objectives import (
    OBJECTIVES,
    PGDAT,
    Natural,
    Objective,
    build_objective,
    register_objective,
)
from harp_prune.training.performance import Performance
from harp_prune.training.robust_objectives import MART, TRADES, FreeAT, mart_loss, trades_loss
from harp_prune.training.stage import StageResult, StageSettings, run_stage

__all__ = [
    "MART", "OBJECTIVES", "PGDAT", "TRADES", "FreeAT", "Natural", "Objective", "Performance", "StageResult",
    "StageSettings", "accuracy", "build_objective", "check_state_dict", "cosine_lr", "load_checkpoint",
    "load_state_into", "mart_loss", "predictions", "register_objective", "run_stage", "save_atomic", "trades_loss",
    "train_epoch",
]
