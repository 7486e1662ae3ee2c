"""The interface every pruning method implements; a new method is one subclass in one file.

A pruner puts masks on a model's prunable parameters (``attach``: by default every Conv2d/Linear weight and
attention's input projections; ``layer_types``, ``include_parameters`` and ``exclude`` choose others), says
which parameters the pruning stage trains, may add a penalty to the loss, may perturb its scores for a second
loss (S2AP), hears about every optimiser step and the end of each epoch, and fixes the masks at the end
(``finalize``). The training loop knows nothing else about it.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from harp_prune.errors import HarpError
from harp_prune.pruning.budget import budget_slack, masks_kept, project_proportionally, project_to_budget
from harp_prune.pruning.masked import (
    Prunable,
    WeightMask,
    mask_sites,
    masked_layers,
    no_prunable_error,
    wrap_model,
)
from harp_prune.pruning.rates import check_density, check_sparsity
from harp_prune.pruning.sharpness import ScoreSharpnessOptions, perturb_scores
from harp_prune.pruning.sparsity import SparsityReport, sparsity_report
from harp_prune.registry import NoOptions, resolve_options

# The budget report warns when the learned density was further than this factor from the target.
FAR_FROM_BUDGET = 2.0


class Pruner(ABC):
    """Base class of pruning methods.

    :param sparsity: the global fraction of the prunable weights to remove, e.g. 0.99.
    :param options: an instance of the method's ``Options`` dataclass; or give its fields as keyword arguments
        (``HarpPruner(0.99, gamma0=0.05)``). An option the method does not declare is an error.
    :param prunable: which parameters get masks (module types, extra parameters, exclusions); default:
        every Conv2d/Linear weight and attention's input projections.
    :param seed: seeds what a method draws at random (the ``random`` importance).
    :param input_shape: (C, H, W) of one input, for methods that trace the model (structured pruning).
    """

    name: ClassVar[str]
    Options: ClassVar[type] = NoOptions
    learns_scores: ClassVar[bool] = False
    # whether the method learns its per-layer allocation (harp, harp-paper, frontier), and whether the optimiser
    # steps the rates for it (harp-paper) or the method moves them itself in after_step (harp, frontier)
    learns_rates: ClassVar[bool] = False
    rates_by_optimizer: ClassVar[bool] = True
    layer_type: ClassVar[type[WeightMask]] = WeightMask

    def __init__(self, sparsity: float, options: Any = None, *, prunable: Prunable | dict | None = None,
                 seed: int = 0, input_shape: Sequence[int] | None = None, **option_values: Any) -> None:
        sparsity = check_sparsity(sparsity)
        self.sparsity = float(sparsity)
        self.target_density = check_density(1.0 - sparsity)
        self.options = resolve_options(self.Options, options, option_values, f"pruning method '{self.name}'")
        if isinstance(self.options, ScoreSharpnessOptions) and self.options.s2ap_rho and not self.learns_scores:
            raise HarpError(f"pruning method '{self.name}' does not train its scores, so S2AP (prune.s2ap_rho) "
                            "would do nothing; remove the setting or choose a method that learns scores")
        self.min_keep = 0.0  # a_min, the floor of every layer's keep-ratio (HARP: alpha * target density)
        self.seed = int(seed)
        self.input_shape = tuple(int(v) for v in input_shape) if input_shape is not None else None
        # a dict is what ``describe`` records, so a checkpoint's description rebuilds the pruner
        self.prunable = Prunable(**prunable) if isinstance(prunable, dict) else prunable or Prunable()
        self.layers: list[WeightMask] = []
        self.layer_names: list[str] = []

    @property
    def needs_training(self) -> bool:
        """Whether the pruning stage has anything to learn (one-shot methods have not)."""
        return self.learns_scores or self.learns_rates

    def attach(self, model: nn.Module) -> dict[str, WeightMask]:
        """Put masks on ``model``'s prunable parameters in place and initialise scores and rates."""
        if self.layers:
            raise HarpError(f"this {self.name} pruner is already attached to a model; make one pruner per model")
        if masked_layers(model):
            raise HarpError("the model already has pruning masks (attach() ran on it before); attach to a fresh "
                            "dense model, or call pruner.adopt(model) to keep its masks")
        layers = wrap_model(model, self.min_keep, self.prunable, layer_type=self.layer_type)
        if not layers:
            raise no_prunable_error(self.prunable)
        for layer in layers.values():
            layer.min_keep = self.min_keep
        self.layers, self.layer_names = list(layers.values()), list(layers)
        self.initialize(self.layers)
        self._set_requires_grad()
        return layers

    def adopt(self, model: nn.Module) -> None:
        """Use the masks already on ``model`` (after loading a checkpoint) without re-initialising them."""
        layers = masked_layers(model)
        if not layers:
            raise HarpError("the model has no pruning masks; call pruner.attach(model) before loading pruning state")
        self.layers, self.layer_names = list(layers.values()), list(layers)
        self._set_requires_grad()

    def _require_attached(self, what: str) -> None:
        if not self.layers:
            raise HarpError(f"{what} needs the pruner's masks: call pruner.attach(model) first")

    @abstractmethod
    def initialize(self, layers: list[WeightMask]) -> None:
        """Set the initial scores and rates of freshly wrapped layers."""

    def _set_requires_grad(self) -> None:
        for layer in self.layers:
            layer.scores.requires_grad_(self.learns_scores)
            layer.rate.requires_grad_(self.learns_rates and self.rates_by_optimizer)

    def trainable_parameters(self, model: nn.Module) -> list[nn.Parameter]:
        """What the pruning stage optimises: scores and/or rates, plus every parameter that is neither a
        pruned weight nor a bias of a module holding one (BatchNorm affine, as the official code does).
        Pruned weights and those biases stay frozen."""
        self._require_attached("trainable_parameters()")
        frozen = set()
        for site in mask_sites(model).values():
            frozen.add(id(site.parameter))
            for _, owner, _ in site.owners:
                frozen.update(id(p) for n, p in owner.named_parameters(recurse=False) if n.endswith("bias"))
        for layer in self.layers:
            if not self.learns_scores:
                frozen.add(id(layer.scores))
            if not (self.learns_rates and self.rates_by_optimizer):
                frozen.add(id(layer.rate))
        params = []
        for param in model.parameters():
            trainable = id(param) not in frozen
            param.requires_grad_(trainable)
            if trainable:
                params.append(param)
        return params

    def gamma_for(self, epoch: int) -> float:
        """The weight of the penalty in ``epoch`` (0 for methods without one)."""
        return 0.0

    def penalty(self, epoch: int) -> torch.Tensor | None:
        """A term added to the adversarial loss in every pruning step (None for none)."""
        return None

    def perturb_scores(self) -> Callable[[], None] | None:
        """S2AP (``prune.s2ap_rho`` > 0, methods that learn scores): after a step's first backward pass, move
        the scores up the robust loss and return the function that restores them; the training loop then
        computes the loss again at the perturbed scores and steps with those gradients. None: S2AP is off."""
        if not self.learns_scores or not isinstance(self.options, ScoreSharpnessOptions) or not self.options.s2ap_rho:
            return None
        return perturb_scores(self.layers, float(self.options.s2ap_rho))

    def plan(self, epochs: int, steps_per_epoch: int) -> None:  # noqa: B027 - most methods need no plan
        """Called once before the pruning stage's first step with its length (optimiser steps per epoch);
        a training loop of your own calls it too. ``harp`` lays its budget trajectory over it."""

    def after_step(self) -> None:  # noqa: B027 - most methods leave the rates to the optimiser
        """Called after every optimiser step of the pruning stage, with the step's gradients still in place
        (a training loop of your own calls it after ``optimizer.step()``). Methods that set the rates
        themselves (``frontier``) move them here."""

    def end_epoch(self, epoch: int) -> dict[str, float]:
        """Called after each pruning epoch; returns figures to log."""
        return {}

    @property
    def ready(self) -> bool:
        """Whether checkpoints of the current epoch may be selected as the best (HARP: budget reached)."""
        return True

    def finalize(self) -> float:
        """Fix the layer budgets so the realised global density meets the target; returns the shift of the rates
        (0: the masks met the target already and are left alone). Masks within ``BUDGET_TOLERANCE`` of it get
        one common shift to the closest count; masks further off get every keep-ratio multiplied by one factor
        (``project_proportionally``), which keeps their order and proportions.

        Each layer's count before the projection is recorded (``WeightMask.learned_kept``), so that the budget
        report can say how far the learned allocation was from the budget."""
        self._require_attached("finalize()")
        for layer in self.layers:
            layer.learned_kept = layer.kept()
        target = round(self.target_density * sum(layer.numel for layer in self.layers))
        kept = masks_kept(self.layers)
        if kept == target:
            return 0.0
        if abs(kept - target) <= budget_slack(target):  # a nudge to the closest count: one common shift
            return project_to_budget(self.layers, self.target_density)
        return project_proportionally(self.layers, self.target_density)

    def report(self, model: nn.Module) -> SparsityReport:
        return sparsity_report(model)

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:  # noqa: B027 - stateless pruners need no override
        """Restore what ``state_dict`` saved (for ``--resume``)."""

    def describe(self) -> dict:
        """What a checkpoint records to rebuild this pruner (``rebuild_pruner``): method, sparsity, options and
        the run's facts."""
        facts = {"seed": self.seed, "prunable": self.prunable.as_dict()}
        if self.input_shape is not None:
            facts["input_shape"] = list(self.input_shape)
        return {"method": self.name, "sparsity": self.sparsity, **dataclasses.asdict(self.options), **facts}

    def budget_report(self) -> dict[str, Any]:
        """What the sparsity target constrains and how the masks meet it, as fractions of the dense model.

        ``quantity`` names it ('weights' here; structured pruners: 'flops' or 'params'), ``target`` is its
        allowed kept fraction and ``realised`` the kept fraction of the current masks; ``weights`` is the
        kept fraction of conv/linear weights whatever the quantity, so every report can show both. After
        ``finalize``, ``learned`` is the kept fraction of weights the method had learned before the budget
        projection, and ``warning`` says so when it was more than ``FAR_FROM_BUDGET`` times off the budget.
        """
        density = self.density()
        report: dict[str, Any] = {"quantity": "weights", "sparsity_of": "weights", "target": self.target_density,
                                  "realised": density, "weights": density}
        learned = [layer.learned_kept for layer in self.layers]
        if all(count is not None for count in learned):
            report["learned"] = sum(learned) / sum(layer.numel for layer in self.layers)  # type: ignore[arg-type]
            factor = report["learned"] / self.target_density
            if not 1 / FAR_FROM_BUDGET <= factor <= FAR_FROM_BUDGET:
                report["warning"] = (f"the learned masks kept {factor:.3g}× the weight budget ({report['learned']:.5f} "
                                     f"of {self.target_density:.5f}); the budget projection, not learning, set the "
                                     "final per-layer counts")
        return report

    def density(self) -> float:
        """The kept fraction of the masked weights, from each mask's kept count (no pass over the weights)."""
        self._require_attached("density()")
        return sum(layer.kept() for layer in self.layers) / sum(layer.numel for layer in self.layers)


@torch.no_grad()
def set_layer_densities(layers: list[WeightMask], densities: Sequence[float]) -> None:
    """Set each layer's rate so that its keep-ratio equals the given density (in the layer's parametrisation)."""
    for layer, density in zip(layers, densities, strict=True):
        layer.rate.fill_(layer.rate_for(density))
