"""Training: objectives, the epoch loop, the stage runner with resume, and checkpoints.

Every module of this package is imported here, so a new objective is one file with a ``@register_objective``
class.
"""

from harp_prune.registry import import_submodules
from harp_prune.training.checkpoint import (
    build_from_spec,
    check_checkpoint_exists,
    check_state_dict,
    load_checkpoint,
    load_model,
    load_state_into,
    load_verified,
    model_from_checkpoint,
    save_atomic,
)
from harp_prune.training.loop import accuracy, cosine_lr, first_non_finite, predictions, train_epoch
from harp_prune.training.metrics import METRICS_FILE, MetricsLog, read_metrics
from harp_prune.training.objectives import (
    OBJECTIVES,
    PGDAT,
    Natural,
    Objective,
    build_objective,
    register_objective,
)
from harp_prune.training.optimizers import OPTIMIZERS, build_optimizer, register_optimizer
from harp_prune.training.performance import Performance
from harp_prune.training.robust_objectives import MART, TRADES, FreeAT, mart_loss, trades_loss
from harp_prune.training.stage import StageCheckpoints, StageData, StageResult, StageSettings, run_stage

__all__ = [
    "MART",
    "METRICS_FILE",
    "OBJECTIVES",
    "OPTIMIZERS",
    "PGDAT",
    "TRADES",
    "FreeAT",
    "MetricsLog",
    "Natural",
    "Objective",
    "Performance",
    "StageCheckpoints",
    "StageData",
    "StageResult",
    "StageSettings",
    "accuracy",
    "build_from_spec",
    "build_objective",
    "build_optimizer",
    "check_checkpoint_exists",
    "check_state_dict",
    "cosine_lr",
    "first_non_finite",
    "load_checkpoint",
    "load_model",
    "load_state_into",
    "load_verified",
    "mart_loss",
    "model_from_checkpoint",
    "predictions",
    "read_metrics",
    "register_objective",
    "register_optimizer",
    "run_stage",
    "save_atomic",
    "trades_loss",
    "train_epoch",
]

import_submodules(__name__, __path__)
