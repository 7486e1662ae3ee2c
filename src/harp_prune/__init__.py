"""harp-prune: Holistic Adversarially Robust Pruning (HARP) as a library and command-line tool.

The flat public API (reference: docs/api.md, generated from these docstrings)::

    import harp_prune as hp
    config = hp.build_config(prune={"sparsity": 0.99})
    results = hp.run(config)                      # pre-train, prune, fine-tune, evaluate
    model, pruner, _ = hp.load_model("runs/default/finetune/final.pt")
    record = hp.evaluate_robustness(model, (images, labels), eps=0.1, attacks=["pgd20", "autoattack"])
    hp.export_checkpoint("runs/default/finetune/final.pt", "sparse")   # or hp.export_model(model, ...)
"""


from harp_prune.attacks import FGSM, PGD, Attack
from harp_prune.config import RunConfig, build_config, read_yaml
from harp_prune.data import Splits, load_dataset, make_splits, tensor_dataset, validation_split
from harp_prune.errors import HarpError
from harp_prune.evaluation import evaluate_robustness
from harp_prune.export import (
    export_checkpoint,
    export_model,
    export_onnx,
    load_slim,
    load_sparse,
    save_sparse,
    slim_model,
)
from harp_prune.models import build_model
from harp_prune.pipeline import evaluate, finetune, prepare, pretrain, prune, run
from harp_prune.pruning import (
    PRUNERS,
    HarpPruner,
    Prunable,
    Pruner,
    WeightMask,
    build_pruner,
    masked_layers,
    sparsity_report,
    unwrap_model,
    wrap_model,
)
from harp_prune.training import load_model
from harp_prune.version import __version__

__all__ = [
    "FGSM", "PGD", "PRUNERS", "Attack", "HarpError", "HarpPruner", "Prunable", "Pruner", "RunConfig", "Splits",
    "WeightMask", "__version__", "build_config", "build_model", "build_pruner", "evaluate", "evaluate_robustness",
    "export_checkpoint", "export_model", "export_onnx", "finetune", "load_dataset", "load_model", "load_slim",
    "load_sparse", "make_splits", "masked_layers", "prepare", "pretrain", "prune", "read_yaml", "run", "save_sparse",
    "slim_model", "sparsity_report", "tensor_dataset", "unwrap_model", "validation_split", "wrap_model",
]
