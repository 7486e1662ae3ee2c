"""harp-prune: Holistic Adversarially Robust Pruning (HARP) as a library and command-line tool.

The flat public API::

    import harp_prune as hp
    config = hp.build_config(cli_values={"prune.sparsity": 0.99})
    results = hp.run(config)                      # pre-train, prune, fine-tune, evaluate
    model, pruner, _ = hp.load_model("runs/default/finetune/final.pt")
    hp.export_checkpoint("runs/default/finetune/final.pt", "sparse")   # or hp.export_model(model, ...)
"""


from harp_prune.attacks import FGSM, PGD, Attack
from harp_prune.config import RunConfig, build_config, read_yaml
from harp_prune.data import Splits, load_dataset, make_splits, tensor_dataset
from harp_prune.errors import HarpError
from harp_prune.export import export_checkpoint, export_model
from harp_prune.models import build_model
from harp_prune.pipeline import evaluate, finetune, prepare, pretrain, prune, run
from harp_prune.pruning import (
    PRUNERS,
    HarpPruner,
    Prunable,
    Pruner,
    WeightMask,
    build_pruner,
    sparsity_report,
    unwrap_model,
    wrap_model,
)
from harp_prune.training import load_model
from harp_prune.version import __version__

__all__ = [
    "FGSM", "PGD", "PRUNERS", "Attack", "HarpError", "HarpPruner", "Prunable", "Pruner", "RunConfig", "Splits",
    "WeightMask", "__version__", "build_config", "build_model", "build_pruner", "evaluate", "export_checkpoint",
    "export_model", "finetune", "load_dataset", "load_model", "make_splits", "prepare", "pretrain", "prune",
    "read_yaml", "run", "sparsity_report", "tensor_dataset", "unwrap_model", "wrap_model",
]
