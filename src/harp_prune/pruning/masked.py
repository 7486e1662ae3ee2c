"""Masked Conv2d/Linear wrappers with learnable scores S and a learnable per-layer quota r.

``wrap_model`` swaps every Conv2d and Linear of *any* ``nn.Module`` for a :class:`MaskedLayer` in place;
``unwrap_model`` puts plain layers with the masked weights back. The mask of a layer is the per-layer
top-k of |S| with k = N - floor((1 - a) * N), a = a_min + (1 - a_min) * sigmoid(r) (method.md §3.2).

The mask is cached and recomputed only when S or r actually change (their in-place version counters
move on every optimiser step or load), so all attack iterations and the training pass of one step share
one top-k: the official code sorts every layer again on each forward pass.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import nn

from harp_prune.pruning.rates import keep_ratio, kept_count

PRUNABLE_TYPES: tuple[type[nn.Module], ...] = (nn.Conv2d, nn.Linear)


class _MaskedWeight(torch.autograd.Function):
    """W_eff = W * M with the straight-through estimator of method.md §3.3.

    With g = dL/dM = dL/dW_eff * W: |S| gets g (the identity STE), so the raw scores get g * sign(S); the
    keep-ratio gets sum(g), and the weight gets dL/dW_eff * M.
    ``mask`` may be a broadcastable view (channel masks: [1, C, 1, 1]); g is then summed over the
    broadcast dimensions, i.e. one gradient per channel, and reshaped to the scores.
    ``frontier`` (None, or a 0/1 tensor shaped like the scores) replaces the keep-ratio's sum(g) by
    N * mean(g over the frontier): see ``MaskedLayer.rate_frontier``.
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


class MaskedLayer(nn.Module):
    """A Conv2d or Linear whose forward uses ``weight * mask``.

    Parameters added: ``scores`` (S, one per pruning unit: here one per weight) and ``rate`` (r, a scalar).
    Subclasses change the pruning unit (e.g. channels) by overriding ``initial_scores`` and ``mask_view_shape``;
    the top-k, the cache and the STE are shared. ``min_keep`` (a_min) and ``max_keep`` (a_max, normally 1)
    are saved in the state dict as extra state, not as buffers, so that DistributedDataParallel's
    per-forward buffer broadcast cannot invalidate the cached mask. The wrapped layer stays reachable as
    ``.layer`` with its own weight and bias.
    """

    def __init__(self, layer: nn.Module, min_keep: float = 0.0) -> None:
        super().__init__()
        if not isinstance(layer, PRUNABLE_TYPES):
            raise TypeError(f"can only mask Conv2d or Linear layers, got {type(layer).__name__}")
        self.layer = layer
        self.scores = nn.Parameter(self.initial_scores(layer.weight.detach()))
        self.rate = nn.Parameter(torch.tensor(20.0))  # sigmoid(20) ~ 1: dense until a pruner sets it
        self.min_keep = float(min_keep)
        # False re-sorts |S| on every forward pass, as the official code does (kept for benchmarks).
        self.reuse_mask = True
        self.max_keep = 1.0  # a_max: below 1 only when the user bounds the layers' keep-ratios
        # 0: the keep-ratio's STE gradient is sum(g) over every weight (method.md §3.3). f > 0: it is
        # N * mean(g) over the frontier, the ceil(f * kept) last kept and as many next pruned weights: the
        # first-order value of keeping a few more *of the weights the mask would add next*, where sum(g)
        # is the value of growing every weight of the layer at once (a harp-prune extension).
        self.rate_frontier = 0.0
        self._mask_key: tuple[int, ...] | None = None
        self._mask: torch.Tensor | None = None
        self._frontier: torch.Tensor | None = None

    @property
    def weight(self) -> torch.Tensor:
        return self.layer.weight

    @property
    def numel(self) -> int:
        return self.layer.weight.numel()

    @property
    def units(self) -> int:
        """How many units (weights, or channels) the mask ranks: the number of scores."""
        return self.scores.numel()

    def initial_scores(self, weight: torch.Tensor) -> torch.Tensor:
        """Scores before any pruner initialises them: |W| (one per weight)."""
        return weight.abs().clone()

    def mask_view_shape(self) -> tuple[int, ...]:
        """The shape the scores-shaped mask takes to broadcast over the weight."""
        return tuple(self.layer.weight.shape)

    def keep_ratio(self) -> torch.Tensor:
        """The differentiable keep-ratio a(l)."""
        return keep_ratio(self.rate, self.min_keep, self.max_keep)

    def kept_units(self) -> int:
        """How many units (scores) the current mask keeps."""
        return kept_count(float(self.keep_ratio().detach()), self.units)

    def kept(self) -> int:
        """How many weights the current mask keeps."""
        return self.kept_units() * (self.numel // self.units)

    def weight_mask(self) -> torch.Tensor:
        """The mask as a view that broadcasts over the weight (the weight's own shape for weight masks)."""
        return self.mask().view(self.mask_view_shape())

    def mask(self) -> torch.Tensor:
        """The binary mask (shape of the scores), recomputed only when S, r or a_min changed."""
        key = (self.scores._version, self.scores.data_ptr(), self.rate._version, self.rate.data_ptr(),
               hash(self.min_keep), hash(self.max_keep), hash(self.rate_frontier))
        if key != self._mask_key or self._mask is None or not self.reuse_mask:
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
            self._mask_key = key
        return self._mask

    def _top(self, magnitude: torch.Tensor, keep: int) -> torch.Tensor:
        """1 at the ``keep`` largest entries of ``magnitude``, shaped like the scores."""
        mask = torch.zeros_like(magnitude)
        if keep >= magnitude.numel():
            mask.fill_(1.0)
        elif keep > 0:
            mask[torch.topk(magnitude, keep, sorted=False).indices] = 1.0
        return mask.view_as(self.scores).to(self.layer.weight.dtype)

    def get_extra_state(self) -> dict:
        return {"min_keep": self.min_keep, "max_keep": self.max_keep}

    def set_extra_state(self, state: dict) -> None:
        self.min_keep = float(state["min_keep"])
        self.max_keep = float(state.get("max_keep", 1.0))
        self._mask_key = None

    def masked_weight(self) -> torch.Tensor:
        if not (self.scores.requires_grad or self.rate.requires_grad):
            return self.layer.weight * self.weight_mask()  # mask fixed (fine-tuning, evaluation)
        mask = self.weight_mask()  # computes self._frontier too
        return _MaskedWeight.apply(self.layer.weight, self.scores, self.keep_ratio(), mask, self._frontier)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.masked_weight()
        if isinstance(self.layer, nn.Conv2d):
            return self.layer._conv_forward(x, weight, self.layer.bias)
        return nn.functional.linear(x, weight, self.layer.bias)

    def extra_repr(self) -> str:
        return f"kept={self.kept()}/{self.numel}"


def wrap_model(model: nn.Module, min_keep: float = 0.0, exclude: tuple[str, ...] = (),
               layer_type: type[MaskedLayer] = MaskedLayer) -> dict[str, MaskedLayer]:
    """Replace each Conv2d/Linear of ``model`` (in place) by a MaskedLayer; returns them by name.

    Names are the module paths of the original layers, in registration order (the order initial
    per-layer strategies are given in). Already wrapped layers are returned as they are.
    """
    layers: dict[str, MaskedLayer] = {}
    for name, module in list(model.named_modules()):
        if isinstance(module, MaskedLayer):
            layers[name] = module
            continue
        if not isinstance(module, PRUNABLE_TYPES) or name in exclude or name.endswith(".layer"):
            continue
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        wrapped = layer_type(module, min_keep)
        setattr(parent, child, wrapped)
        layers[name] = wrapped
    return layers


def masked_layers(model: nn.Module) -> dict[str, MaskedLayer]:
    """The MaskedLayers of a wrapped model, by the name of the layer they wrap."""
    return {name: m for name, m in model.named_modules() if isinstance(m, MaskedLayer)}


def unwrap_model(model: nn.Module) -> nn.Module:
    """Put plain layers back (in place), with the masked-out weights set to zero; returns ``model``."""
    for name, module in list(model.named_modules()):
        if isinstance(module, MaskedLayer):
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            with torch.no_grad():
                module.layer.weight.mul_(module.weight_mask())
            setattr(parent, child, module.layer)
    return model


def iter_prunable(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """(name, layer) for every Conv2d/Linear, masked or not, in registration order."""
    for name, module in model.named_modules():
        if isinstance(module, MaskedLayer):
            yield name, module.layer
        elif isinstance(module, PRUNABLE_TYPES) and not name.endswith(".layer"):
            yield name, module


def fan_in(weight: torch.Tensor) -> int:
    """Inputs feeding one output: in_ch * kh * kw for conv, in_features for linear."""
    return math.prod(weight.shape[1:])
