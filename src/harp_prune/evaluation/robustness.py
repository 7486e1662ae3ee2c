"""Natural and robust accuracy of a model on a data split, with its counted sparsity, as data."""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from harp_prune import distributed
from harp_prune.attacks import Attack
from harp_prune.evaluation.chunks import Split, evaluate_in_chunks, seeded
from harp_prune.evaluation.sanity import balanced_accuracy
from harp_prune.progress import log
from harp_prune.pruning import sparsity_report
from harp_prune.training.loop import predictions


def evaluate_model(model: nn.Module, loader: DataLoader, attacks: dict[str, Attack], device: torch.device,
                   show_progress: bool = False, seed: int | None = None) -> dict[str, Any]:
    """Natural accuracy, robust accuracy per attack and their point-wise worst case, and sparsity.

    The worst case counts an example as robust only if every attack failed on it. Attacks that declare
    ``whole_set`` (AutoAttack) are run on the whole set in their independent chunks (``chunk_size``,
    ``run_chunk``, ``combine``), shared out among torchrun ranks, so that their internal point-wise worst
    case over components holds and the result equals a single process's; the others run batch by batch.
    ``seed`` (None: the global random stream) draws each attack's random starts from a stream of its own.
    """
    started = time.perf_counter()
    natural, truth = predictions(model, loader, device, desc="natural", show_progress=show_progress)
    correct_everywhere = natural == truth
    robust: dict[str, float] = {}
    balanced = {"natural": balanced_accuracy(natural == truth, truth)}
    details: dict[str, dict[str, Any]] = {}
    flags: list[str] = []
    seconds: dict[str, float] = {}
    rank = distributed.rank() if distributed.active() else 0
    for number, (name, attack) in enumerate(attacks.items()):
        attack_started = time.perf_counter()
        if getattr(attack, "whole_set", False):
            result = whole_set_result(attack, model, loader, device)
            hit = result.robust
            details[name] = {"clean_acc": result.clean_acc, "components": result.components,
                             "flags": result.flags, "resumed_from": result.resumed_from,
                             "state_files": result.state_files}
            flags.extend(f"{name}: {flag}" for flag in result.flags)
        else:
            with seeded(seed, number, rank, device=device):  # each rank draws the starts of its own shard
                predicted, _ = predictions(model, loader, device, attack, desc=name, show_progress=show_progress)
            hit = predicted == truth
        if getattr(attack, "flags", None) and name not in details:
            flags.extend(f"{name}: {flag}" for flag in attack.flags)
        seconds[name] = time.perf_counter() - attack_started
        robust[name] = float(hit.double().mean())
        balanced[name] = balanced_accuracy(hit, truth)
        correct_everywhere &= hit
    if attacks:
        balanced["worst_case"] = balanced_accuracy(correct_everywhere, truth)
    for flag in flags:
        log(f"[evaluate] warning: {flag}")
    report = sparsity_report(model).as_dict()
    return {
        "examples": len(truth),
        "natural_acc": float((natural == truth).double().mean()),
        "robust_acc": robust,
        "worst_case_acc": float(correct_everywhere.double().mean()) if attacks else None,
        "balanced_acc": balanced,
        "attacks": {name: describe_attack(a) for name, a in attacks.items()},
        "attack_details": details,
        "attack_seconds": seconds,
        "flags": flags,
        "sparsity": report["sparsity"],
        "kept_weights": report["kept"],
        "prunable_weights": report["total"],
        "layers": report["layers"],
        "dense_layers": report["dense_layers"],  # prunable types left without a mask (excluded)
        "other_parameters": report["other_parameters"],
        "seconds": time.perf_counter() - started,
    }


def whole_set_result(attack: Any, model: nn.Module, loader: DataLoader, device: torch.device) -> Any:
    """A whole-set attack's result on every example of ``loader``'s split, each chunk evaluated once (by one
    rank under torchrun), gathered on every rank in the split's order."""
    split = Split.of(loader)
    parts = evaluate_in_chunks(split, range(len(split)), attack.chunk_size,
                               lambda _, images, labels: attack.run_chunk(model, images.to(device),
                                                                          labels.to(device)).without_examples())
    return attack.combine(parts)


def describe_attack(attack: Attack) -> dict[str, Any]:
    """The attack's class and numeric/str settings, for the result JSON."""
    settings = {k: v for k, v in vars(attack).items() if isinstance(v, int | float | str | bool)}
    return {"type": type(attack).__name__, **settings}
