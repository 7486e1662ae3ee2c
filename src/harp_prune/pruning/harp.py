"""HARP, harp-prune's default: learn how many weights each layer keeps (r) and which (S), under one global
size budget that the kept count follows at every step (docs/method.md, 'harp: the budget trajectory').

What differs from the paper's mechanics (``harp-paper``), and why (measured in docs/harp-999.md):

- r is the log keep-ratio, a = clamp(exp(r), a_min, a_max): da/dr = a never vanishes, where the paper's
  sigmoid saturates at 99.9 % and leaves layers stuck at 100 % or at the floor whatever γ does;
- the rates are stepped by the pruner with a bounded, per-layer normalised step (Adam's, over the layer's
  per-weight rate gradient), not by SGD on the raw sum of N mask gradients, whose size varies by orders of
  magnitude between layers and steps;
- the kept count follows a trajectory from the initial density down to the target over the first ``ramp``
  of the pruning steps and holds it after, by one common log-ratio shift after every step (it multiplies
  every keep-ratio by one factor, so the learned proportions stay); the budget is met from then on;
- what is learned is each layer's factor on a layer budget that moves with the trajectory, within a factor
  ``travel`` (3) of it: the initial strategy (LAMP by default) at the initial density, geometrically to the
  same strategy at the target. A
  uniform strategy gives the paper's uniform start and plain proportional descent; LAMP gives every density
  on the way a sensible allocation to learn from, where a uniform descent to 0.1 % starves the small early
  layers of a ResNet before their rates can learn (docs/harp-999.md);
- γ, the size loss's weight, is the price of a kept weight: it rises when the rates' own steps drift above
  the trajectory and falls when they drift below (dual ascent), instead of a fixed per-epoch ramp.

The rate gradient is the STE's, computed from the scores' gradient of the same backward pass: per layer,
the mean of dL/dM over its boundary (``rate_boundary_width`` f > 0: the last kept and next pruned weights) or
over all its weights (f = 0: the paper's sum(g) / N), plus the size loss's γ / K per kept weight, where
K = a_t N is the target count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from harp_prune.errors import HarpError
from harp_prune.pruning.base import set_layer_densities
from harp_prune.pruning.budget import project_to_budget
from harp_prune.pruning.importance import scaled_score_init
from harp_prune.pruning.learned import BoundedRatePruner, LayerBoundsOptions
from harp_prune.pruning.registry import register_pruner
from harp_prune.pruning.strategies import layer_densities
from harp_prune.pruning.weight_mask import WeightMask
from harp_prune.registry import number, option

# Adam's decays for the rate steps: a step follows ~10 steps of gradient, normalised over ~100.
MOMENTUM, SQUARE_DECAY = 0.9, 0.99
# γ may change by at most this factor per step, however far the rates drifted.
MAX_PRICE_CHANGE = math.e


@dataclass(frozen=True)
class HarpOptions(LayerBoundsOptions):
    init_strategy: str = option("lamp", "the layer budget the allocation starts from and moves with: at every step of "
                                        "the trajectory its keep-ratios at that density, times the learned factors "
                                        "(uniform, lamp, erk, global-magnitude, or one keep-ratio per layer)")
    rate_boundary_width: float = option(0.2, "the rate gradient's estimator: f > 0, the mean mask gradient over "
                                             "the layer's boundary, the ceil(f × kept) last kept and next pruned "
                                             "weights (the value of its next weights); 0: over all its weights "
                                             "(the paper's sum)", renamed_from=("rate_frontier",))
    rate_reach: float = option(8.0, "how far (in log keep-ratio) a layer's rate can move over the pruning stage: "
                                    "each step moves it by at most rate_reach / the number of pruning steps")
    ramp: float = option(0.5, "the share of the pruning steps over which the budget falls geometrically from the "
                              "initial density to the target, which is then held (0: the target from the first step)")
    travel: float = option(3.0, "how far a layer's keep-ratio may move from the moving layer budget, as a factor "
                                "(3: between a third and three times it); 0: as far as the floor a_min and 1")
    gamma_step: float = option(0.1, "how fast γ, the price of a kept weight, follows the rates' drift from the "
                                    "budget trajectory: log γ moves by gamma_step per full rate step of drift")

    def __post_init__(self) -> None:
        super().__post_init__()
        if not number("rate_reach", self.rate_reach) > 0:
            raise HarpError(f"rate_reach must be > 0 (a distance in log keep-ratio, e.g. 8), got {self.rate_reach}")
        if not 0.0 <= number("ramp", self.ramp) < 1.0:
            raise HarpError(f"ramp must lie in [0, 1) (a share of the pruning steps), got {self.ramp}")
        if number("travel", self.travel) != 0 and self.travel <= 1:
            raise HarpError(f"travel must be a factor above 1 (or 0: unbounded), got {self.travel}")
        if not number("gamma_step", self.gamma_step) >= 0:
            raise HarpError(f"gamma_step must be >= 0 (0: γ keeps its first value), got {self.gamma_step}")


@register_pruner
class HarpPruner(BoundedRatePruner):
    """HARP (Zhao & Wressnegger, ICLR 2023), harp-prune's default: learned per-layer rates and scores under a
    size loss, with the kept count on a budget trajectory at every step.

    Scores start at the scaled weight magnitude and are trained by the optimiser through the STE. The rates
    (log keep-ratios) start at the initial strategy (LAMP at 10 % kept) and are moved by the pruner after
    every optimiser step (``after_step``): a normalised step against the layer's rate gradient under
    L_adv + γ L_hw, then one common shift onto the trajectory. ``plan(epochs, steps_per_epoch)`` must be
    called before the first step (the pruning stage does). ``harp-paper`` keeps the paper's mechanics.
    Options: ``HarpOptions``; the reasoning and the measurements: docs/method.md and docs/harp-999.md.

    Example::

        pruner = HarpPruner(0.999)
        pruner.attach(model)
        optimizer = torch.optim.SGD(pruner.trainable_parameters(model), lr=0.1, momentum=0.9)
        pruner.plan(epochs, len(loader))
        # in the loop: loss.backward(); optimizer.step(); pruner.after_step()
    """

    name = "harp"
    Options = HarpOptions
    rates_by_optimizer = False

    def __init__(self, sparsity: float, options: Any = None, **kwargs: Any) -> None:
        super().__init__(sparsity, options, **kwargs)
        self.total_steps: int | None = None  # set by plan()
        self.step = 0
        self.start_density = 1.0
        # the initial strategy's log keep-ratios at the initial density and at the target: the moving prior
        self.prior_start: list[float] = []
        self.prior_end: list[float] = []
        self.gamma: float | None = None  # set at the first step, from the rate gradients it sees
        self.moment: torch.Tensor | None = None
        self.square: torch.Tensor | None = None

    def initialize(self, layers: list[WeightMask]) -> None:
        self.set_bounds(layers)
        for layer in layers:
            layer.log_rate = True
        scaled_score_init(layers)
        start = self.initial_densities(layers)
        set_layer_densities(layers, start)
        self.start_density = sum(layer.kept() for layer in layers) / sum(layer.numel for layer in layers)
        end = layer_densities(self.options.init_strategy, layers, self.target_density)
        self.prior_start = [layer.rate_for(d) for layer, d in zip(layers, start, strict=True)]
        self.prior_end = [layer.rate_for(d) for layer, d in zip(layers, end, strict=True)]

    def plan(self, epochs: int, steps_per_epoch: int) -> None:
        if epochs < 0 or steps_per_epoch < 1:
            raise HarpError(f"harp needs a pruning stage of >= 0 epochs of >= 1 step, got {epochs} epochs of "
                            f"{steps_per_epoch} steps")
        self.total_steps = epochs * steps_per_epoch

    @property
    def ramp_steps(self) -> int:
        """How many steps the trajectory takes from the initial density to the target."""
        if self.total_steps is None:
            raise HarpError("harp's budget trajectory needs the length of the pruning stage: call "
                            "pruner.plan(epochs, steps_per_epoch) before the first step")
        return math.ceil(float(self.options.ramp) * self.total_steps)

    def progress(self, step: int) -> float:
        """How far along the ramp ``step`` steps are, in [0, 1]."""
        return min(1.0, step / self.ramp_steps) if self.ramp_steps else 1.0

    def trajectory(self, step: int) -> float:
        """The density the kept count follows after ``step`` steps: geometric from the initial one to the target."""
        return self.start_density * (self.target_density / self.start_density) ** self.progress(step)

    def prior(self, step: int) -> list[float]:
        """The moving layer budget's log keep-ratios after ``step`` steps (geometric between its two ends)."""
        t = self.progress(step)
        return [(1 - t) * a + t * b for a, b in zip(self.prior_start, self.prior_end, strict=True)]

    def gamma_for(self, epoch: int) -> float:
        return self.gamma or 0.0

    def penalty(self, epoch: int) -> torch.Tensor:
        """Nothing to add to the loss: harp's size loss acts on the rates in ``after_step`` (they are the
        pruner's, not the optimiser's). A zero tensor, so ``loss + pruner.penalty(epoch)`` works."""
        self._require_attached("the size loss")
        return torch.zeros((), device=self.layers[0].rate.device)

    @torch.no_grad()
    def after_step(self) -> None:
        values = [layer.mean_mask_gradient() for layer in self.layers]
        if any(value is None for value in values):
            return  # no backward pass yet
        if self.total_steps is None:
            raise HarpError("harp's budget trajectory needs the length of the pruning stage: call "
                            "pruner.plan(epochs, steps_per_epoch) before the first step")
        # one read from the device for all layers; the rate statistics live on the host
        value = torch.stack([v.detach().double() for v in values]).cpu()  # type: ignore[union-attr]
        self.step += 1
        target = self.trajectory(self.step)
        kept_target = self.target_density * sum(layer.numel for layer in self.layers)
        if self.gamma is None:  # the first price: the median layer's next weights are worth it
            price = float((-value).median())
            self.gamma = (price if price > 0 else max(float(value.abs().mean()), 1e-30)) * kept_target
        # per kept weight: dL_adv/dM (the STE's rate gradient over N a) plus the size loss's γ / K, where
        # L_hw = soft density / a_t - 1 and K = a_t N is the target count (dL_hw/da_l = N_l / K)
        gradient = value + self.gamma / kept_target
        if self.moment is None or self.square is None:
            self.moment, self.square = torch.zeros_like(gradient), torch.zeros_like(gradient)
        self.moment.mul_(MOMENTUM).add_((1 - MOMENTUM) * gradient)
        self.square.mul_(SQUARE_DECAY).add_((1 - SQUARE_DECAY) * gradient.square())
        mean = self.moment / (1 - MOMENTUM ** self.step)
        spread = (self.square / (1 - SQUARE_DECAY ** self.step)).sqrt().clamp_min(1e-30)
        rate_step = float(self.options.rate_reach) / max(self.total_steps, 1)
        moves = (-rate_step * mean / spread).tolist()
        kept = [layer.kept() for layer in self.layers]
        # the moving budget's own change this step, layer by layer (the trajectory's part of the step)
        prior_moves = [b - a for a, b in zip(self.prior(self.step - 1), self.prior(self.step), strict=True)]
        prior = self.prior(self.step)
        for layer, move, prior_move, centre in zip(self.layers, moves, prior_moves, prior, strict=True):
            layer.rate.add_(move + prior_move)
            self._clamp(layer, centre)
        shift = project_to_budget(self.layers, target)
        for layer, centre in zip(self.layers, prior, strict=True):
            self._clamp(layer, centre + shift)
        # the rates' own drift: how far their learned steps alone moved the kept count, in log terms
        drift = sum(k * move for k, move in zip(kept, moves, strict=True)) / max(sum(kept), 1)
        exponent = float(self.options.gamma_step) * drift / rate_step
        self.gamma *= math.exp(max(-1.0, min(1.0, exponent)) * math.log(MAX_PRICE_CHANGE))

    def _clamp(self, layer: WeightMask, centre: float) -> None:
        """Keep a rate inside its bounds, so that a step back is felt at once (no dead zone past a clamp), and
        within ``travel`` of the moving layer budget's ``centre``."""
        low, high = layer.rate_range()
        if self.options.travel:
            reach = math.log(float(self.options.travel))
            low, high = max(low, centre - reach), min(high, centre + reach)
        layer.rate.clamp_(low, max(low, high))

    def end_epoch(self, epoch: int) -> dict[str, float]:
        with torch.no_grad():
            loss, soft = float(self.size_loss()), float(self.soft_size())
        return {"gamma": self.gamma or 0.0, "size_loss": loss, "soft_density": soft,
                "trajectory_density": self.trajectory(self.step), "budget_reached": float(self.ready)}

    @property
    def ready(self) -> bool:
        return self.total_steps is not None and self.step >= self.ramp_steps

    def state_dict(self) -> dict:
        return {"step": self.step, "start_density": self.start_density, "gamma": self.gamma,
                "prior_start": self.prior_start, "prior_end": self.prior_end,
                "moment": None if self.moment is None else self.moment.tolist(),
                "square": None if self.square is None else self.square.tolist()}

    def load_state_dict(self, state: dict) -> None:
        self.step, self.start_density, self.gamma = int(state["step"]), float(state["start_density"]), state["gamma"]
        self.prior_start, self.prior_end = list(state["prior_start"]), list(state["prior_end"])
        self.moment = None if state["moment"] is None else torch.tensor(state["moment"], dtype=torch.float64)
        self.square = None if state["square"] is None else torch.tensor(state["square"], dtype=torch.float64)
