"""Natural and robust accuracy of a model on a data split, with its counted sparsity, as data."""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from harp_prune.attacks import Attack
from harp_prune.pruning import sparsity_report
from harp_prune.training.loop import predictions


def evaluate_model(model: nn.Module, loader: DataLoader, attacks: dict[str, Attack], device: torch.device,
                   show_progress: bool = False) -> dict[str, Any]:
    """Natural accuracy, robust accuracy per attack and their point-wise worst case, and sparsity.

    The worst case counts an example as robust only if every attack failed on it.
    """
    started = time.perf_counter()
    natural, truth = predictions(model, loader, device, desc="natural", show_progress=show_progress)
    correct_everywhere = natural == truth
    robust: dict[str, float] = {}
    for name, attack in attacks.items():
        predicted, _ = predictions(model, loader, device, attack, desc=name, show_progress=show_progress)
        hit = predicted == truth
        robust[name] = float(hit.float().mean())
        correct_everywhere &= hit
    report = sparsity_report(model)
    return {
        "examples": len(truth),
        "natural_acc": float((natural == truth).float().mean()),
        "robust_acc": robust,
        "worst_case_acc": float(correct_everywhere.float().mean()) if attacks else None,
        "attacks": {name: describe_attack(a) for name, a in attacks.items()},
        "sparsity": report.sparsity,
        "kept_weights": report.kept,
        "prunable_weights": report.total,
        "layers": report.as_dict()["layers"],
        "seconds": time.perf_counter() - started,
    }


def describe_attack(attack: Attack) -> dict[str, Any]:
    """The attack's class and numeric/str settings, for the result JSON."""
    settings = {k: v for k, v in vars(attack).items() if isinstance(v, int | float | str | bool)}
    return {"type": type(attack).__name__, **settings}
