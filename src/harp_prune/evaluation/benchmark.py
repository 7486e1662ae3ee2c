"""One call for any model: natural and robust accuracy under named attacks, the eps sweep and counted sparsity,
as the JSON-ready record ``harp evaluate`` writes (``evaluation_record`` is what both build it with).

Everything comes from arguments, nothing from a RunConfig, so this layer stays below the config and the pipeline.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from harp_prune.attacks import ATTACKS, Attack, build_attack
from harp_prune.attacks.base import eval_mode
from harp_prune.attacks.registry import split_attack_name
from harp_prune.data import tensor_dataset
from harp_prune.errors import HarpError
from harp_prune.evaluation.chunks import Split, evaluate_in_chunks
from harp_prune.evaluation.robustness import evaluate_model
from harp_prune.evaluation.sanity import spread_subset, sweep_hits, sweep_report
from harp_prune.evaluation.suite import evaluation_rng, threat_model
from harp_prune.progress import log
from harp_prune.training import first_non_finite

# the eps multiples of the sanity sweep, as ``evaluate.eps_sweep`` defaults to them
DEFAULT_SWEEP = (0.5, 1.0, 2.0, 16.0)
# without a step size PGD takes eps / 4: the ratio of the data sets' defaults (0.1 / 0.025, 8/255 / 2/255)
STEP_SIZE_FRACTION = 0.25


def build_attacks(names: Sequence[str], eps: float, norm: str = "linf", *, step_size: float | None = None,
                  seed: int = 0, batch_size: int = 500, state_dir: str | Path | None = None,
                  options: Mapping[str, Any] | None = None) -> dict[str, Attack]:
    """Attacks by name (``pgd20``, ``autoattack``, ...) in one threat model, each given the ``options`` it takes.

    An option that none of the attacks takes is an error naming it, as is a name given twice.
    """
    if len(set(names)) != len(names):
        raise HarpError(f"the attacks {', '.join(names)} name one attack twice; give each attack once")
    options = dict(options or {})
    taken_by_any: set[str] = set()
    attacks = {}
    for name in names:
        taken = ATTACKS.get(split_attack_name(name)[0]).takes()
        taken_by_any.update(taken)
        attacks[name] = build_attack(name, eps, norm, step_size=step_size, seed=seed, batch_size=batch_size,
                                     state_dir=state_dir, **{k: v for k, v in options.items() if k in taken})
    unused = sorted(set(options) - taken_by_any)
    if unused:
        raise HarpError(f"none of the attacks {', '.join(names)} takes the option(s) {', '.join(unused)}; "
                        "drop them or add an attack that takes them")
    return attacks


def sweep_loader(model: nn.Module, loader: DataLoader, device: torch.device, eps: float, step_size: float, norm: str,
                 multiples: Sequence[float], steps: int, examples: int, batch_size: int,
                 seed: int | None = None) -> dict[str, Any]:
    """The eps sweep (``sanity.sweep_report``) on ``examples`` test images spread over ``loader``'s split.

    The subset is cut into chunks of ``batch_size`` that torchrun ranks share out; with a ``seed`` the figures
    are the same for any number of processes.
    """
    split = Split.of(loader)
    with eval_mode(model):
        hits = evaluate_in_chunks(
            split, spread_subset(len(split), examples), batch_size,
            lambda start, images, labels: sweep_hits(model, images.to(device), labels.to(device), eps, step_size,
                                                     norm, list(multiples), steps, seed, start))
    return sweep_report(torch.cat(hits, dim=1), eps, norm, list(multiples), steps)


def evaluation_record(model: nn.Module, loader: DataLoader, attacks: dict[str, Attack], device: torch.device, *,
                      eps: float, step_size: float, norm: str, seed: int, dataset: str,
                      sweep: Sequence[float] | None = DEFAULT_SWEEP, sweep_steps: int = 20, sweep_examples: int = 500,
                      batch_size: int = 500, show_progress: bool = False,
                      budget: dict[str, Any] | None = None) -> dict[str, Any]:
    """``evaluate_model`` and the eps sweep under the evaluation's own random stream (``evaluation_rng(seed)``),
    with the threat model, the data set's name and the sweep's warnings among the flags: ``harp evaluate``'s
    record. ``budget`` is the pruner's ``budget_report()``, if there is one."""
    if (broken := first_non_finite(model)) is not None:  # every prediction would be the same arbitrary class
        raise HarpError(f"the model's {broken} holds NaN/inf, so its accuracy would mean nothing; evaluate a model "
                        "whose training did not diverge")
    # the attacks' random starts depend on the seed alone, not on what ran before, and leave the caller's random
    # stream as it was
    with evaluation_rng(seed, device):
        result = evaluate_model(model, loader, attacks, device, show_progress)
        if sweep:
            result["sanity"] = sweep_loader(model, loader, device, eps, step_size, norm, sweep, sweep_steps,
                                            sweep_examples, batch_size)
    result.update({"dataset": dataset, "eps": eps, "norm": norm, "threat_model": threat_model(norm),
                   "clean_acc": result["natural_acc"], "n_examples": result["examples"], "seed": seed,
                   "budget": budget})
    if "sanity" in result:
        result["flags"] += [f"sanity: {w}" for w in result["sanity"]["warnings"]]
        for warning in result["sanity"]["warnings"]:
            log(f"[evaluate] warning: {warning}")
    return result


def _check_label_range(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, device: torch.device) -> None:
    """Labels the model has no output for would fail deep inside an attack's loss (an IndexError): name them."""
    with eval_mode(model), torch.no_grad():
        outputs = model(images[:1].to(device)).shape[-1]
    if int(labels.max()) >= outputs:
        raise HarpError(f"labels must be in [0, {outputs}) for a model with {outputs} outputs, found "
                        f"{int(labels.max())}; give the labels of the classes the model was trained on")


def _model_device(model: nn.Module) -> torch.device:
    return next((p.device for p in model.parameters()), torch.device("cpu"))


def evaluate_robustness(model: nn.Module, data: DataLoader | tuple[torch.Tensor, torch.Tensor], eps: float,
                        attacks: Sequence[str] = ("pgd20",), norm: str = "linf", *, step_size: float | None = None,
                        seed: int = 0, batch_size: int = 500, device: str | torch.device | None = None,
                        sweep: Sequence[float] | None = DEFAULT_SWEEP, sweep_steps: int = 20,
                        sweep_examples: int = 500, attack_options: Mapping[str, Any] | None = None,
                        state_dir: str | Path | None = None, dataset: str = "user data",
                        show_progress: bool = False) -> dict[str, Any]:
    """Natural and robust accuracy of any model under named attacks, in one call, without a RunConfig.

    The record is the one ``harp evaluate`` writes, and its numbers are the same for the same model, images and
    settings: ``natural_acc``, ``robust_acc`` per attack, ``worst_case_acc`` (an example counts only if every
    attack failed on it), ``balanced_acc``, ``flags`` (AutoAttack's checks, the eps sweep's warnings), the
    ``sanity`` sweep, the counted ``sparsity`` and per-layer ``layers`` (a dense model: sparsity 0), the attacks'
    settings and timings. It is JSON-ready (``harp_prune.results.write_json``).

    :param model: any ``nn.Module`` mapping [0, 1] images to logits (normalisation inside the model); it is
        evaluated in eval mode and its train/eval mode is restored afterwards.
    :param data: ``(images, labels)`` tensors (N x C x H x W floats in [0, 1], integer labels) or a DataLoader of
        such batches (read in its order).
    :param eps: the radius of the threat model, e.g. 8/255 for CIFAR-10 under L-inf.
    :param attacks: attack names: ``fgsm``, ``pgd<K>``, ``cw<K>``, ``apgd-ce``, ``apgd-dlr``, ``autoattack``
        (AutoAttack needs the ``autoattack`` extra).
    :param norm: ``"linf"`` or ``"l2"``.
    :param step_size: the PGD/CW step size (default eps / 4).
    :param seed: seeds the attacks' random starts, in a stream of its own; the caller's random state is restored.
    :param batch_size: the batch of tensor data and of AutoAttack's and the sweep's chunks.
    :param device: where to evaluate (default: where the model's parameters are); the model is moved there.
    :param sweep: eps multiples of the sanity sweep (PGD-``sweep_steps`` at each; None: no sweep).
    :param sweep_steps: the sweep's PGD steps.
    :param sweep_examples: test images the sweep uses, spread over the data.
    :param attack_options: the attacks' options by name (``pgd_restarts``, ``cw_kappa``, ``apgd_restarts``,
        ``autoattack_version``); each attack gets those it takes.
    :param state_dir: where AutoAttack keeps its resumable state (default: none kept).
    :param dataset: the data's name in the record.
    :param show_progress: progress bars.
    :returns: the evaluation record, a dict of plain data.

    Example::

        import harp_prune as hp
        record = hp.evaluate_robustness(model, (images, labels), eps=8 / 255, attacks=["pgd20", "autoattack"])
        print(record["natural_acc"], record["robust_acc"]["autoattack"], record["flags"])
    """
    if not eps > 0:
        raise HarpError(f"eps must be > 0 (the radius of the threat model, e.g. 8/255), got {eps}")
    if isinstance(data, DataLoader):
        loader = data
    elif isinstance(data, tuple | list) and len(data) == 2:
        loader = DataLoader(tensor_dataset(*data), batch_size=batch_size, shuffle=False)
    else:
        raise HarpError(f"data must be an (images, labels) pair of tensors or a DataLoader, got {type(data).__name__}")
    step_size = step_size if step_size is not None else eps * STEP_SIZE_FRACTION
    device = torch.device(device) if device is not None else _model_device(model)
    model = model.to(device)
    if not isinstance(data, DataLoader):
        _check_label_range(model, *loader.dataset.tensors, device)
    built = build_attacks(list(attacks), eps, norm, step_size=step_size, seed=seed, batch_size=batch_size,
                          state_dir=state_dir, options=attack_options)
    return evaluation_record(model, loader, built, device, eps=eps, step_size=step_size, norm=norm, seed=seed,
                             dataset=dataset, sweep=sweep, sweep_steps=sweep_steps, sweep_examples=sweep_examples,
                             batch_size=batch_size, show_progress=show_progress)
