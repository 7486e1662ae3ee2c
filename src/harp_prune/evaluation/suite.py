"""The evaluation a config asks for: which attacks (``evaluate.attacks``) and the eps-sweep sanity check."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from harp_prune.attacks import PGD, VERSIONS, Attack, build_attack
from harp_prune.config import RunConfig
from harp_prune.errors import HarpError
from harp_prune.evaluation.chunks import Split, evaluate_in_chunks
from harp_prune.evaluation.sanity import parse_multiples, spread_subset, sweep_hits, sweep_report

THREAT_MODELS = {"linf": "Linf", "l2": "L2"}
# evaluation draws from seed + this offset: a stream of its own, apart from training's (seeded with seed)
EVALUATION_SEED_OFFSET = 1_000_003


@contextlib.contextmanager
def evaluation_rng(seed: int, device: torch.device) -> Iterator[None]:
    """Seed the random starts of an evaluation from the config's seed, and restore the caller's random
    state afterwards, so an evaluation neither depends on nor disturbs what ran before it."""
    devices = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed + EVALUATION_SEED_OFFSET)
        yield


def evaluation_attacks(config: RunConfig, state_dir: Path | None = None) -> dict[str, Attack]:
    """``evaluate.attacks`` by name (default: ``pgd<evaluate.pgd_steps>``), all in the configured threat model."""
    a, e = config.attack, config.evaluate
    if not e.attacks:
        return {f"pgd{e.pgd_steps}": PGD(a.eps, a.step_size, e.pgd_steps, restarts=e.pgd_restarts, norm=a.norm)}
    version, components = e.autoattack_version, None
    if version not in VERSIONS:
        version, components = "custom", [c.strip() for c in version.split(",") if c.strip()]
    names = [n.strip() for n in e.attacks.split(",") if n.strip()]
    if len(set(names)) != len(names):
        raise HarpError(f"evaluate.attacks lists an attack twice: '{e.attacks}'")
    return {name: build_attack(name, a.eps, a.norm, step_size=a.step_size, restarts=e.pgd_restarts, seed=config.seed,
                               version=version, components=components, batch_size=config.data.eval_batch_size,
                               state_dir=state_dir)
            for name in names}


def sanity_section(config: RunConfig, model: nn.Module, loader: DataLoader, device: torch.device,
                   seed: int | None = None) -> dict[str, Any]:
    """PGD robust accuracy over eps multiples on a spread subset of the test split, with warnings.

    The subset is cut into chunks of ``data.eval_batch_size`` that torchrun ranks share out; with a ``seed``
    the figures are the same for any number of processes.
    """
    a, e = config.attack, config.evaluate
    split = Split.of(loader)
    multiples = parse_multiples(e.eps_sweep or "")
    was_training = model.training
    model.eval()
    try:
        hits = evaluate_in_chunks(
            split, spread_subset(len(split), e.sanity_examples), config.data.eval_batch_size,
            lambda start, images, labels: sweep_hits(model, images.to(device), labels.to(device), a.eps,
                                                     a.step_size, a.norm, multiples, e.pgd_steps, seed, start))
    finally:
        model.train(was_training)
    return sweep_report(torch.cat(hits, dim=1), a.eps, a.norm, multiples, e.pgd_steps)


def threat_model(norm: str) -> str:
    return THREAT_MODELS.get(norm, norm)
