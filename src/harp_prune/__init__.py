"""harp-prune: Holistic Adversarially Robust Pruning (HARP) as a library and command-line tool.

The flat public API (reference: docs/api.md, generated from these docstrings)::

    import harp_prune as hp
    config = hp.build_config(prune={"sparsity": 0.99})
    results = hp.run(config)                      # pre-train, prune, fine-tune, evaluate
    model, pruner, _ = hp.load_model("runs/default/finetune/final.pt")
    record = hp.evaluate_robustness(model, (images, labels), eps=0.1, attacks=["pgd20", "autoattack"])
    hp.export_checkpoint("runs/default/finetune/final.pt", "sparse")   # or hp.export_model(model, ...)
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harp_prune.version import __version__

# The public names, imported from their modules on first use (PEP 562) rather than here: every submodule import
# runs this file first, and the ``harp`` command's help must answer without loading torch (seconds). The
# imports below are what type checkers and IDEs see, and the one list of what is exported where (read by
# ``_exports``).
if TYPE_CHECKING:
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


def _exports() -> dict[str, str]:
    """Each public name and its module, from the ``if TYPE_CHECKING:`` imports of this file."""
    tree = ast.parse(Path(__file__).read_text(encoding="utf-8"))
    block = next(node for node in tree.body if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING")
    return {alias.name: node.module for node in block.body if isinstance(node, ast.ImportFrom)
            for alias in node.names}


_HOME = _exports()
__all__ = sorted([*_HOME, "__version__"])


def __getattr__(name: str) -> Any:
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module 'harp_prune' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOME})
