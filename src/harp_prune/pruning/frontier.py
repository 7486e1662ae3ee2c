"""Frontier allocation (a harp-prune extension, not in the paper): per-layer rates moved by the marginal value
of each layer's next weights, under a budget that holds at every step (docs/frontier.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from harp_prune.errors import HarpError
from harp_prune.pruning.base import Pruner
from harp_prune.pruning.budget import project_to_budget, set_layer_counts
from harp_prune.pruning.fixed import counts_for_densities
from harp_prune.pruning.importance import scaled_score_init
from harp_prune.pruning.registry import register_pruner
from harp_prune.pruning.sharpness import ScoreSharpnessOptions
from harp_prune.pruning.strategies import layer_densities, parse_strategy
from harp_prune.pruning.weight_mask import WeightMask
from harp_prune.registry import number, option

# Rates stay within this range of logits: far enough for any keep-ratio, near enough that a layer pushed
# against its floor or ceiling can come back within a few steps.
RATE_LIMIT = 12.0


@dataclass(frozen=True)
class FrontierOptions(ScoreSharpnessOptions):
    """Options of the frontier allocation."""

    init_strategy: str = option("lamp", "the layer budget the keep-ratios start from, at the target density "
                                        "(uniform, lamp, erk, global-magnitude, or one keep-ratio per layer)")
    rate_step: float = option(0.01, "how far (in logits) one step moves a layer whose marginal value is one "
                                    "root-mean-square away from the others'")
    boundary_width: float = option(0.2, "the boundary of a layer: the ceil(f × kept) last kept and as many next "
                                        "pruned weights, whose mean mask gradient is the layer's marginal value",
                                   renamed_from=("frontier",))
    value_decay: float = option(0.99, "decay of the running means of the marginal values and of their squares "
                                      "(1 − the weight of a step)")
    value_scale: str = option("layer", "what a layer's running marginal value is divided by: 'shared', the root "
                                        "mean square of all layers' values; 'layer', the layer's own (as Adam does "
                                        "per parameter, so a layer whose value is mostly noise moves little)",
                              choices=("shared", "layer"), legacy="shared")
    travel: float = option(3.0, "how far a layer's kept count may move from its initial count, as a factor "
                                "(3: between a third and three times it); 0: as far as the floor a_min and 1",
                           legacy=0.0)
    move_epochs: int = option(0, "the allocation moves during the first N pruning epochs and is then held, so "
                                 "the scores settle on it; 0: it moves in every epoch")
    alpha: float = option(0.01, "a_min = alpha × (1 − sparsity), the floor of every layer's keep-ratio")

    def __post_init__(self) -> None:
        super().__post_init__()
        parse_strategy(self.init_strategy, "init_strategy")
        if number("rate_step", self.rate_step) < 0:
            raise HarpError(f"rate_step must be >= 0 (0 keeps the initial layer budget), got {self.rate_step}")
        if not 0.0 < number("boundary_width", self.boundary_width) <= 1.0:
            raise HarpError(f"boundary_width must lie in (0, 1] (a fraction of each layer's kept weights), "
                            f"got {self.boundary_width}")
        if not 0.0 <= number("value_decay", self.value_decay) < 1.0:
            raise HarpError(f"value_decay must lie in [0, 1), got {self.value_decay}")
        if number("travel", self.travel) != 0 and self.travel <= 1:
            raise HarpError(f"travel must be a factor above 1 (or 0: unbounded), got {self.travel}")
        if number("move_epochs", self.move_epochs) < 0 or self.move_epochs != int(self.move_epochs):
            raise HarpError(f"move_epochs must be a whole number of epochs >= 0 (0: every epoch), "
                            f"got {self.move_epochs}")
        if not 0.0 <= number("alpha", self.alpha) < 1.0:
            raise HarpError(f"alpha (a_min / target density) must be in [0, 1), got {self.alpha}")


@register_pruner
class FrontierPruner(Pruner):
    """Learned scores and a learned allocation that holds the budget at every step (a harp-prune extension).

    Scores start at the scaled weight magnitude and are trained by the STE, as in HARP and HYDRA. The
    keep-ratios start at a layer budget (LAMP by default) *at the target density*. After every optimiser
    step each layer's marginal value is read off the step's gradients: the mean mask gradient dL/dM over its
    frontier (the last kept and the next pruned weights), i.e. the first-order change of the loss per weight
    added to that layer. Each rate logit moves against the running mean of that value, divided by the
    layer's own running root mean square (so a noisy layer moves little), within a factor ``travel`` of its
    initial count, and one common logit shift (the budget projection) then brings the kept count back to the
    budget exactly. Weights flow from layers whose next weights are worth least to those whose next weights
    are worth most; there is no size loss and no γ. The reasoning and the measurements: docs/frontier.md.

    Example::

        pruner = FrontierPruner(0.999)
        pruner.attach(model)
        optimizer = torch.optim.SGD(pruner.trainable_parameters(model), lr=0.1, momentum=0.9)
        # in the loop: loss.backward(); optimizer.step(); pruner.after_step()
    """

    name = "frontier"
    Options = FrontierOptions
    learns_scores = True
    # The allocation is learned, but the rates are not the optimiser's: the pruner moves them in after_step, so
    # the budget always holds.
    learns_rates = True
    rates_by_optimizer = False

    def __init__(self, sparsity: float, options: Any = None, **kwargs: Any) -> None:
        super().__init__(sparsity, options, **kwargs)
        self.min_keep = float(self.options.alpha) * self.target_density
        self.running_value: torch.Tensor | None = None  # per layer: running mean of the marginal value
        self.running_square: torch.Tensor | None = None  # running mean of its square (per layer, or over layers)
        self.epochs_done = 0  # pruning epochs ended: move_epochs counts them

    def initialize(self, layers: list[WeightMask]) -> None:
        scaled_score_init(layers)
        # the exact per-layer counts a fixed-rate method would keep: with rate_step 0 this is HYDRA on that budget
        counts = counts_for_densities(layers, layer_densities(self.options.init_strategy, layers, self.target_density))
        if self.options.travel:  # the keep-ratio's bounds are the sigmoid's ends, so the projection keeps them too
            factor = float(self.options.travel)
            for layer, count in zip(layers, counts, strict=True):
                density = count / layer.numel
                layer.min_keep, layer.max_keep = max(layer.min_keep, density / factor), min(1.0, density * factor)
        set_layer_counts(layers, counts)
        self._set_frontier(layers)

    def adopt(self, model: torch.nn.Module) -> None:
        super().adopt(model)
        self._set_frontier(self.layers)

    def _set_frontier(self, layers: list[WeightMask]) -> None:
        for layer in layers:
            layer.rate_frontier = float(self.options.boundary_width)

    @torch.no_grad()
    def after_step(self) -> None:
        if self.options.rate_step == 0 or self.allocation_held:
            return  # before reading the values: once held, a step costs nothing here
        values = [layer.frontier_gradient() for layer in self.layers]
        if any(value is None for value in values):
            return
        # one read from the device for all layers (the running statistics live on the host)
        value = torch.stack([v.detach().float() for v in values]).cpu()  # type: ignore[union-attr]
        decay = float(self.options.value_decay)
        # 'shared' compares the layers' values on one scale; 'layer' divides each by its own noise: on a
        # residual network the layers' per-step values differ 5,000-fold in spread (docs/frontier.md)
        per_layer = self.options.value_scale == "layer"
        square = (value.square() if per_layer else value.square().mean()).double()
        if self.running_value is None or self.running_square is None:
            self.running_value, self.running_square = value.clone(), square
        else:
            self.running_value.mul_(decay).add_((1.0 - decay) * value)
            self.running_square.mul_(decay).add_((1.0 - decay) * square)
        scale = (self.running_square.clamp_min(1e-30).sqrt() if per_layer
                 else max(float(self.running_square), 1e-30) ** 0.5)
        steps = -float(self.options.rate_step) * self.running_value / scale
        for layer, step in zip(self.layers, steps.tolist(), strict=True):
            layer.rate.add_(step).clamp_(-RATE_LIMIT, RATE_LIMIT)
        project_to_budget(self.layers, self.target_density)

    @property
    def allocation_held(self) -> bool:
        """Whether the allocation is held from now on (``move_epochs`` pruning epochs have ended)."""
        return 0 < int(self.options.move_epochs) <= self.epochs_done

    def end_epoch(self, epoch: int) -> dict[str, float]:
        self.epochs_done = epoch + 1
        return {"budget_reached": 1.0}

    def state_dict(self) -> dict:
        state = {name: None if value is None else value.tolist()
                 for name, value in (("running_value", self.running_value), ("running_square", self.running_square))}
        return {**state, "value_scale": self.options.value_scale, "travel": self.options.travel,
                "move_epochs": self.options.move_epochs, "epochs_done": self.epochs_done}

    def load_state_dict(self, state: dict) -> None:
        # a state written before value_scale and travel existed is the first version's ('shared', unbounded),
        # one written before move_epochs existed moved in every epoch (0)
        made = (state.get("value_scale", "shared"), float(state.get("travel", 0.0)), int(state.get("move_epochs", 0)))
        this_run = (self.options.value_scale, float(self.options.travel), int(self.options.move_epochs))
        if made != this_run:
            raise HarpError(f"this frontier state was written with value_scale {made[0]}, travel {made[1]:g} and "
                            f"move_epochs {made[2]}, this run has {this_run[0]}, {this_run[1]:g} and {this_run[2]}; "
                            f"resume with --prune-value-scale {made[0]} --prune-travel {made[1]:g} "
                            f"--prune-move-epochs {made[2]}, or start in a new --out-dir")
        self.epochs_done = int(state.get("epochs_done", 0))
        saved = state.get("running_value")
        self.running_value = None if saved is None else torch.tensor(saved)
        self.running_square = None if saved is None else torch.tensor(state["running_square"], dtype=torch.float64)
