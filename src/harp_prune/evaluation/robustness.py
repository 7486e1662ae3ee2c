"""Natural and robust accuracy of a model on a data split, with its counted sparsity, as data."""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from harp_prune.attacks import Attack
from harp_prune.evaluation.sanity import balanced_accuracy
from harp_prune.progress import log
from harp_prune.pruning import sparsity_report
from harp_prune.training.loop import predictions


def gather(loader: DataLoader) -> tuple[torch.Tensor, torch.Tensor]:
    """All (images, labels) of a non-shuffled loader as two CPU tensors, in loader order."""
    images, labels = zip(*((x, y) for x, y in loader), strict=True)
    return torch.cat(images), torch.cat(labels)


def evaluate_model(model: nn.Module, loader: DataLoader, attacks: dict[str, Attack], device: torch.device,
                   show_progress: bool = False) -> dict[str, Any]:
    """Natural accuracy, robust accuracy per attack and their point-wise worst case, and sparsity.

    The worst case counts an example as robust only if every attack failed on it. Attacks that declare
    ``whole_set`` (AutoAttack) are run once on the whole set with their own batching, so that their
    internal point-wise worst case over components holds; the others run batch by batch.
    """
    started = time.perf_counter()
    natural, truth = predictions(model, loader, device, desc="natural", show_progress=show_progress)
    correct_everywhere = natural == truth
    robust: dict[str, float] = {}
    balanced = {"natural": balanced_accuracy(natural == truth, truth)}
    details: dict[str, dict[str, Any]] = {}
    flags: list[str] = []
    seconds: dict[str, float] = {}
    for name, attack in attacks.items():
        attack_started = time.perf_counter()
        if getattr(attack, "whole_set", False):
            images, labels = gather(loader)
            result = attack.run(model, images.to(device), labels.to(device))
            hit = result.robust.cpu()
            details[name] = {"clean_acc": result.clean_acc, "components": result.components,
                             "flags": result.flags, "resumed_from": result.resumed_from,
                             "state_file": result.state_file}
            flags.extend(f"{name}: {flag}" for flag in result.flags)
        else:
            predicted, _ = predictions(model, loader, device, attack, desc=name, show_progress=show_progress)
            hit = predicted == truth
        if getattr(attack, "flags", None) and name not in details:
            flags.extend(f"{name}: {flag}" for flag in attack.flags)
        seconds[name] = time.perf_counter() - attack_started
        robust[name] = float(hit.float().mean())
        balanced[name] = balanced_accuracy(hit, truth)
        correct_everywhere &= hit
    if attacks:
        balanced["worst_case"] = balanced_accuracy(correct_everywhere, truth)
    for flag in flags:
        log(f"[evaluate] warning: {flag}")
    report = sparsity_report(model)
    return {
        "examples": len(truth),
        "natural_acc": float((natural == truth).float().mean()),
        "robust_acc": robust,
        "worst_case_acc": float(correct_everywhere.float().mean()) if attacks else None,
        "balanced_acc": balanced,
        "attacks": {name: describe_attack(a) for name, a in attacks.items()},
        "attack_details": details,
        "attack_seconds": seconds,
        "flags": flags,
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
