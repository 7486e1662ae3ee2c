"""The three-stage pipeline (adversarial pre-training, pruning, fine-tuning) and evaluation.

These functions are what the CLI calls, and what a Python user calls: each takes a :class:`RunConfig` and,
optionally, the user's own model and data (any ``nn.Module``; any map-style datasets of [0, 1] images).
``runtime.py`` holds the device, seeding and loaders, ``components.py`` builds what the config chooses,
``stages.py`` the stages (each returns a ``StageOutcome``), ``evaluation.py`` the evaluation and ``run.py``
the whole run.
"""

from harp_prune.pipeline.components import (
    STAGES,
    configured_prunable,
    evaluation_attacks,
    make_pruner,
    method_options,
    objective_for,
    prepare,
    training_attack,
    validate_run,
)
from harp_prune.pipeline.evaluation import evaluate, sanity_section
from harp_prune.pipeline.resume import RESULT_KEYS
from harp_prune.pipeline.run import run, summarize
from harp_prune.pipeline.runtime import Context, open_context, resolve_device, seed_everything
from harp_prune.pipeline.stages import StageOutcome, finetune, pretrain, prune

__all__ = [
    "RESULT_KEYS", "STAGES", "Context", "StageOutcome", "configured_prunable", "evaluate", "evaluation_attacks",
    "finetune", "make_pruner", "method_options", "objective_for", "open_context", "prepare", "pretrain", "prune",
    "resolve_device", "run", "sanity_section", "seed_everything", "summarize", "training_attack", "validate_run",
]
