"""The mask on one parameter: learnable scores S and a quota r, applied as a ``torch.nn.utils.parametrize``
parametrization (``masked.py`` says which parameters get one).

The mask of a parameter is the top-k of |S| with k = N - floor((1 - a) * N), a = a_min + (a_max - a_min)
sigmoid(r), or a = clamp(exp(r), a_min, a_max) for a layer with ``log_rate`` (docs/method.md). It is cached
and recomputed only when the *values* of S, r or the bounds change, so all attack iterations and the
training pass of one optimiser step share one top-k (the official code sorts every layer again on each
forward pass). The cache compares values, not version counters: fused and foreach optimisers and writes
through ``.data`` change values without moving a version counter.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from harp_prune.pruning.rates import (
    keep_ratio,
    kept_count,
    log_keep_ratio,
    rate_for_keep_ratio,
    rate_for_log_keep_ratio,
)


class _MaskedWeight(torch.autograd.Function):
    """W_eff = W * M with the straight-through estimator (docs/method.md, 'The STE').

    With g = dL/dM = dL/dW_eff * W: |S| gets g (the identity STE), so the raw scores get g * sign(S); the
    keep-ratio gets sum(g), and the weight gets dL/dW_eff * M.
    ``mask`` may be a broadcastable view (channel masks: [1, C, 1, 1]); g is then summed over the
    broadcast dimensions, i.e. one gradient per channel, and reshaped to the scores.
    ``frontier`` (None, or a 0/1 tensor shaped like the scores) replaces the keep-ratio's sum(g) by
    N * mean(g over the frontier): see ``WeightMask.rate_frontier``.
    """

    @staticmethod
    def forward(ctx, weight, scores, ratio, mask, frontier):  # type: ignore[override]
        ctx.save_for_backward(weight, scores, mask, frontier)
        return weight * mask

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        weight, scores, mask, frontier = ctx.saved_tensors
        grad_weight = grad_out * mask if ctx.needs_input_grad[0] else None
        grad_scores = grad_ratio = None
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            grad_mask = (grad_out * weight).sum_to_size(mask.shape)
            # The mask ranks |S|, so the raw score gets g * sign(S).
            grad_scores = grad_mask.reshape(scores.shape) * torch.sign(scores) if ctx.needs_input_grad[1] else None
            if not ctx.needs_input_grad[2]:
                grad_ratio = None
            elif frontier is None:
                grad_ratio = grad_mask.sum()
            else:
                grad_ratio = (grad_mask.reshape(frontier.shape) * frontier).sum() * (frontier.numel() / frontier.sum())
        return grad_weight, grad_scores, grad_ratio, None, None


class WeightMask(nn.Module):
    """The parametrization W -> W * M of one prunable parameter, with scores ``S`` and a rate ``r``.

    Parameters: ``scores`` (S, one per pruning unit: here one per weight) and ``rate`` (r, a scalar).
    Subclasses change the pruning unit (e.g. channels) by overriding ``initial_scores`` and
    ``mask_view_shape``; the top-k, the cache and the STE are shared. ``min_keep`` (a_min) and ``max_keep``
    (a_max, normally 1) are saved in the state dict as extra state, not as buffers, so that
    DistributedDataParallel's per-forward buffer broadcast cannot touch them. The unmasked Parameter is
    ``.weight``.
    """

    def __init__(self, weight: torch.Tensor, min_keep: float = 0.0, module: nn.Module | None = None) -> None:
        super().__init__()
        self.weight_shape = tuple(weight.shape)
        self.scores = nn.Parameter(self.initial_scores(weight.detach()))
        self.rate = nn.Parameter(torch.tensor(20.0, device=weight.device))  # sigmoid(20) ~ 1: dense until set
        self.min_keep = float(min_keep)
        # False re-sorts |S| on every forward pass, as the official code does (kept for benchmarks).
        self.reuse_mask = True
        self.max_keep = 1.0  # a_max: below 1 only when the user bounds the layers' keep-ratios
        # False: a = a_min + (a_max - a_min) sigmoid(r), the paper's; True: r is the log keep-ratio (harp).
        # Saved in the extra state: the same rate means another keep-ratio under the other parametrisation.
        self.log_rate = False
        # the kept count before the budget projection (Pruner.finalize), None before it: saved in the extra
        # state, so a loaded checkpoint still reports how far the learned allocation was from the budget
        self.learned_kept: int | None = None
        # 0: the keep-ratio's STE gradient is sum(g) over every weight (docs/method.md). f > 0: it is
        # N * mean(g) over the frontier, the ceil(f * kept) last kept and as many next pruned weights: the
        # first-order value of keeping a few more *of the weights the mask would add next*, where sum(g)
        # is the value of growing every weight of the layer at once (a harp-prune extension).
        self.rate_frontier = 0.0
        # The unmasked Parameter, held in a list so that it is not registered twice as this module's own.
        self._original: list[torch.Tensor] = [weight]
        self._seen: tuple[torch.Tensor, torch.Tensor, tuple[float, float, float, bool]] | None = None
        self._mask: torch.Tensor | None = None
        self._frontier: torch.Tensor | None = None

    @property
    def weight(self) -> torch.Tensor:
        """The unmasked parameter (what the mask multiplies)."""
        return self._original[0]

    @property
    def numel(self) -> int:
        return math.prod(self.weight_shape)

    @property
    def units(self) -> int:
        """How many units (weights, or channels) the mask ranks: the number of scores."""
        return self.scores.numel()

    def initial_scores(self, weight: torch.Tensor) -> torch.Tensor:
        """Scores before any pruner initialises them: |W| (one per weight)."""
        return weight.abs().clone()

    def mask_view_shape(self) -> tuple[int, ...]:
        """The shape the scores-shaped mask takes to broadcast over the weight."""
        return self.weight_shape

    def keep_ratio(self) -> torch.Tensor:
        """The differentiable keep-ratio a(l)."""
        if self.log_rate:
            return log_keep_ratio(self.rate, self.min_keep, self.max_keep)
        return keep_ratio(self.rate, self.min_keep, self.max_keep)

    def ratio_at(self, rate: torch.Tensor) -> torch.Tensor:
        """The keep-ratio this layer would have at ``rate`` (a tensor like ``self.rate``)."""
        if self.log_rate:
            return log_keep_ratio(rate, self.min_keep, self.max_keep)
        return keep_ratio(rate, self.min_keep, self.max_keep)

    def rate_for(self, density: float) -> float:
        """The rate whose keep-ratio is ``density`` (clipped into the layer's bounds)."""
        if self.log_rate:
            return rate_for_log_keep_ratio(density, self.min_keep, self.max_keep)
        return rate_for_keep_ratio(density, self.min_keep, self.max_keep)

    def rate_range(self) -> tuple[float, float]:
        """Rates that give the lowest and the highest keep-ratio (the ends a bisection over the rate searches)."""
        if self.log_rate:
            return math.log(max(self.min_keep, 1e-30)), math.log(self.max_keep)
        return -30.0, 30.0  # sigmoid(±30) is exactly 0 or 1 in float32

    def kept_units(self) -> int:
        """How many units (scores) the current mask keeps."""
        return kept_count(float(self.keep_ratio().detach()), self.units)

    def kept(self) -> int:
        """How many weights the current mask keeps."""
        return self.kept_units() * (self.numel // self.units)

    def kept_at(self, ratio: float) -> int:
        """How many weights the mask would keep at keep-ratio ``ratio`` (``kept()`` at the current one)."""
        return kept_count(ratio, self.units) * (self.numel // self.units)

    def weight_mask(self) -> torch.Tensor:
        """The mask as a view that broadcasts over the weight (the weight's own shape for weight masks)."""
        return self.mask().view(self.mask_view_shape())

    def masked_weight(self) -> torch.Tensor:
        """W * M as every holder of the parameter reads it (without the STE's graph)."""
        return self.weight.detach() * self.weight_mask()

    def _is_fresh(self) -> bool:
        """Whether the cached mask was computed from the current values of S, r and the bounds."""
        if self._seen is None or self._mask is None or not self.reuse_mask:
            return False
        scores, rate, settings = self._seen
        scores_now, rate_now = self.scores.detach(), self.rate.detach()
        return (settings == (self.min_keep, self.max_keep, self.rate_frontier, self.log_rate)
                and scores.device == scores_now.device and torch.equal(rate, rate_now)
                and torch.equal(scores, scores_now))

    def mask(self) -> torch.Tensor:
        """The binary mask (shape of the scores), recomputed only when the values of S, r or a_min changed."""
        if not self._is_fresh():
            with torch.no_grad():
                magnitude = self.scores.detach().abs().flatten()
                keep, units = self.kept_units(), magnitude.numel()
                self._mask = self._top(magnitude, keep)
                self._frontier = None
                if self.rate_frontier > 0:  # ranks [keep - m, keep + m) of |S|: the last kept, the next pruned
                    width = max(1, math.ceil(self.rate_frontier * keep))
                    # clamp: with tied |S|, two top-k calls need not nest
                    self._frontier = (self._top(magnitude, min(units, keep + width))
                                      - self._top(magnitude, max(0, keep - width))).clamp_min(0)
                self._seen = (self.scores.detach().clone(), self.rate.detach().clone(),
                              (self.min_keep, self.max_keep, self.rate_frontier, self.log_rate))
        assert self._mask is not None
        return self._mask

    def frontier_gradient(self) -> torch.Tensor | None:
        """The mean of dL/dM over the frontier units in the last backward pass, read from the scores'
        gradient (dL/dS = dL/dM * sign(S) at the scores the mask was ranked on); None before any backward
        or without a frontier (``rate_frontier`` 0). Negative: keeping more of this layer lowers the loss."""
        if self._frontier is None:
            return None
        return self.mean_mask_gradient()

    def mean_mask_gradient(self) -> torch.Tensor | None:
        """dL/dM of the last backward pass averaged over the frontier units (``rate_frontier`` > 0) or over
        every unit (0: the paper's rate gradient sum(g) divided by N); None before any backward."""
        if self.scores.grad is None or self._seen is None:
            return None
        mask_gradient = self.scores.grad * torch.sign(self._seen[0])
        if self._frontier is None:
            return mask_gradient.mean()
        return (mask_gradient * self._frontier).sum() / self._frontier.sum()

    def _top(self, magnitude: torch.Tensor, keep: int) -> torch.Tensor:
        """1 at the ``keep`` largest entries of ``magnitude``, shaped like the scores."""
        mask = torch.zeros_like(magnitude)
        if keep >= magnitude.numel():
            mask.fill_(1.0)
        elif keep > 0:
            mask[torch.topk(magnitude, keep, sorted=False).indices] = 1.0
        return mask.view_as(self.scores).to(self.weight.dtype)

    def get_extra_state(self) -> dict:
        return {"min_keep": self.min_keep, "max_keep": self.max_keep, "log_rate": self.log_rate,
                "learned_kept": self.learned_kept}

    def set_extra_state(self, state: dict) -> None:
        self.min_keep = float(state["min_keep"])
        self.max_keep = float(state.get("max_keep", 1.0))
        self.log_rate = bool(state.get("log_rate", False))  # written before harp's log rates: the sigmoid
        self.learned_kept = state.get("learned_kept")

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        """The masked weight, as every read of the parametrized parameter sees it."""
        if not (self.scores.requires_grad or self.rate.requires_grad):
            return weight * self.weight_mask()  # mask fixed (fine-tuning, evaluation)
        mask = self.weight_mask()  # computes self._frontier too
        return _MaskedWeight.apply(weight, self.scores, self.keep_ratio(), mask, self._frontier)

    def extra_repr(self) -> str:
        return f"kept={self.kept()}/{self.numel}"


def fan_in(weight: torch.Tensor | Sequence[int]) -> int:
    """Inputs feeding one output: in_ch * kh * kw for conv, in_features for linear."""
    shape = weight.shape if isinstance(weight, torch.Tensor) else weight
    return math.prod(shape[1:])
