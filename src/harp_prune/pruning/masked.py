"""Masks on parameters: learnable scores S and a per-parameter quota r, applied with ``torch.nn.utils.parametrize``.

``wrap_model`` registers a :class:`WeightMask` parametrization on every prunable parameter of *any*
``nn.Module`` (by default the ``weight`` of each Conv2d and Linear and the input projections of
``nn.MultiheadAttention``): every read of that parameter, by the module's own forward or by any other code
(attention reads ``out_proj.weight`` directly), returns ``W * M``. The model keeps its own module types, a
module registered under two names is masked once and masked wherever it runs, and a Parameter shared by two
modules (tied weights) has one mask. ``unwrap_model`` removes the parametrizations and leaves the masked
values in the original Parameters.

The mask of a parameter is the top-k of |S| with k = N - floor((1 - a) * N), a = a_min + (a_max - a_min)
sigmoid(r) (docs/method.md). It is cached and recomputed only when the *values* of S, r or the bounds change,
so all attack iterations and the training pass of one optimiser step share one top-k (the official code
sorts every layer again on each forward pass). The cache compares values, not version counters: fused and
foreach optimisers and writes through ``.data`` change values without moving a version counter.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn.utils import parametrize

from harp_prune.errors import HarpError
from harp_prune.pruning.rates import keep_ratio, kept_count

# The parameters pruned by default, by module type: all conv/linear weights and attention's projections.
DEFAULT_PRUNABLE: dict[type[nn.Module], tuple[str, ...]] = {
    nn.Conv2d: ("weight",),
    nn.Linear: ("weight",),
    nn.MultiheadAttention: ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight"),
}
# Module types a user can name in ``layer_types`` (config ``prune.layer_types``).
LAYER_TYPES: dict[str, tuple[type[nn.Module], tuple[str, ...]]] = {
    "conv1d": (nn.Conv1d, ("weight",)),
    "conv2d": (nn.Conv2d, ("weight",)),
    "conv3d": (nn.Conv3d, ("weight",)),
    "linear": (nn.Linear, ("weight",)),
    "attention": (nn.MultiheadAttention, DEFAULT_PRUNABLE[nn.MultiheadAttention]),
}
DEFAULT_LAYER_TYPES = ("conv2d", "linear", "attention")
PRUNABLE_TYPES: tuple[type[nn.Module], ...] = (nn.Conv2d, nn.Linear)  # what channel pruning and slimming handle


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
        # 0: the keep-ratio's STE gradient is sum(g) over every weight (docs/method.md). f > 0: it is
        # N * mean(g) over the frontier, the ceil(f * kept) last kept and as many next pruned weights: the
        # first-order value of keeping a few more *of the weights the mask would add next*, where sum(g)
        # is the value of growing every weight of the layer at once (a harp-prune extension).
        self.rate_frontier = 0.0
        # The unmasked Parameter, held in a list so that it is not registered twice as this module's own.
        self._original: list[torch.Tensor] = [weight]
        self._seen: tuple[torch.Tensor, torch.Tensor, tuple[float, float, float]] | None = None
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

    def masked_weight(self) -> torch.Tensor:
        """W * M as every holder of the parameter reads it (without the STE's graph)."""
        return self.weight.detach() * self.weight_mask()

    def _is_fresh(self) -> bool:
        """Whether the cached mask was computed from the current values of S, r and the bounds."""
        if self._seen is None or self._mask is None or not self.reuse_mask:
            return False
        scores, rate, settings = self._seen
        scores_now, rate_now = self.scores.detach(), self.rate.detach()
        return (settings == (self.min_keep, self.max_keep, self.rate_frontier)
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
                              (self.min_keep, self.max_keep, self.rate_frontier))
        assert self._mask is not None
        return self._mask

    def _top(self, magnitude: torch.Tensor, keep: int) -> torch.Tensor:
        """1 at the ``keep`` largest entries of ``magnitude``, shaped like the scores."""
        mask = torch.zeros_like(magnitude)
        if keep >= magnitude.numel():
            mask.fill_(1.0)
        elif keep > 0:
            mask[torch.topk(magnitude, keep, sorted=False).indices] = 1.0
        return mask.view_as(self.scores).to(self.weight.dtype)

    def get_extra_state(self) -> dict:
        return {"min_keep": self.min_keep, "max_keep": self.max_keep}

    def set_extra_state(self, state: dict) -> None:
        self.min_keep = float(state["min_keep"])
        self.max_keep = float(state.get("max_keep", 1.0))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        """The masked weight, as every read of the parametrized parameter sees it."""
        if not (self.scores.requires_grad or self.rate.requires_grad):
            return weight * self.weight_mask()  # mask fixed (fine-tuning, evaluation)
        mask = self.weight_mask()  # computes self._frontier too
        return _MaskedWeight.apply(weight, self.scores, self.keep_ratio(), mask, self._frontier)

    def extra_repr(self) -> str:
        return f"kept={self.kept()}/{self.numel}"


# ------------------------------------------------------------------------------------------ what is pruned


@dataclass(frozen=True)
class Prunable:
    """Which parameters of a model are pruned.

    :param layer_types: module type names (keys of ``LAYER_TYPES``) whose weights are pruned.
    :param include_parameters: extra parameter names or glob patterns (``*.in_proj_weight``, ``head.weight``) to prune
        whatever module holds them.
    :param exclude: module or parameter names or glob patterns left dense (``classifier.*``, ``net.features.0``).
    """

    layer_types: tuple[str, ...] = DEFAULT_LAYER_TYPES
    include_parameters: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for kind in ("layer_types", "include_parameters", "exclude"):
            value = getattr(self, kind)
            if isinstance(value, str):  # one comma-separated string, as from the command line
                object.__setattr__(self, kind, tuple(v.strip() for v in value.split(",") if v.strip()))
            else:
                object.__setattr__(self, kind, tuple(value))
        unknown = [t for t in self.layer_types if t not in LAYER_TYPES]
        if unknown:
            raise HarpError(f"unknown prunable layer type(s) {', '.join(unknown)}; choose from "
                            f"{', '.join(LAYER_TYPES)}")

    def as_dict(self) -> dict[str, list[str]]:
        return {"layer_types": list(self.layer_types), "include_parameters": list(self.include_parameters),
                "exclude": list(self.exclude)}

    def excluded(self, *names: str) -> bool:
        return any(fnmatch.fnmatchcase(name, pattern) for name in names for pattern in self.exclude)


@dataclass
class Site:
    """One pruned (or prunable) Parameter: its report name and every (module, attribute) that holds it."""

    name: str
    parameter: torch.Tensor
    owners: list[tuple[str, nn.Module, str]] = field(default_factory=list)  # (module name, module, attribute)
    mask: WeightMask | None = None  # its mask, once the model is wrapped


def _site_name(module_name: str, attribute: str) -> str:
    """A module's ``weight`` is named after the module (``net.features.0``), anything else in full."""
    if attribute == "weight":
        return module_name
    return f"{module_name}.{attribute}" if module_name else attribute


def _raw_parameter(module: nn.Module, attribute: str) -> torch.Tensor | None:
    """The Parameter behind ``module.attribute`` (the unmasked original when it is parametrized)."""
    if parametrize.is_parametrized(module, attribute):
        return module.parametrizations[attribute].original  # type: ignore[index,union-attr]
    return module._parameters.get(attribute)


def find_sites(model: nn.Module, prunable: Prunable | None = None) -> tuple[dict[str, Site], dict[str, Site]]:
    """(selected, excluded) prunable Parameters of ``model``, each once, by report name.

    A module reachable under several names, or a Parameter held by several modules, is one site with
    every holder in ``owners``; it is named after its first holder in registration order.
    """
    prunable = prunable or Prunable()
    chosen = {LAYER_TYPES[name][0]: LAYER_TYPES[name][1] for name in prunable.layer_types}
    sites: dict[int, Site] = {}
    excluded_ids: set[int] = set()
    for module_name, module in model.named_modules(remove_duplicate=False):
        if isinstance(module, WeightMask | parametrize.ParametrizationList):
            continue
        attributes: list[str] = []
        for cls, names in chosen.items():
            if isinstance(module, cls):
                attributes += [n for n in names if n not in attributes]
        own = list(module._parameters) + (list(module.parametrizations) if parametrize.is_parametrized(module) else [])
        for attribute in own:
            full = f"{module_name}.{attribute}" if module_name else attribute
            if attribute not in attributes and any(fnmatch.fnmatchcase(full, p) for p in prunable.include_parameters):
                attributes.append(attribute)
        for attribute in attributes:
            parameter = _raw_parameter(module, attribute)
            if parameter is None:
                continue
            name = _site_name(module_name, attribute)
            key = id(parameter)
            site = sites.setdefault(key, Site(name, parameter))
            if all(owner is not module or attr != attribute for _, owner, attr in site.owners):
                site.owners.append((module_name, module, attribute))
            full = f"{module_name}.{attribute}" if module_name else attribute
            if prunable.excluded(name, full, module_name):
                excluded_ids.add(key)
    selected = {site.name: site for key, site in sites.items() if key not in excluded_ids}
    excluded = {site.name: site for key, site in sites.items() if key in excluded_ids}
    return selected, excluded


def no_prunable_error(prunable: Prunable) -> HarpError:
    """The error for a model in which ``prunable`` selects nothing."""
    return HarpError(
        f"the model has no prunable parameter (layer types {', '.join(prunable.layer_types)}, patterns "
        f"{list(prunable.include_parameters)}, minus exclude {list(prunable.exclude)}); give a model with "
        "Conv2d/Linear/attention layers or name parameters with prune.include_parameters"
    )


def mask_of(module: nn.Module, attribute: str) -> WeightMask | None:
    """The WeightMask parametrizing ``module.attribute``, if any."""
    if not parametrize.is_parametrized(module, attribute):
        return None
    for candidate in module.parametrizations[attribute]:  # type: ignore[index,union-attr]
        if isinstance(candidate, WeightMask):
            return candidate
    return None


def wrap_model(model: nn.Module, min_keep: float = 0.0, prunable: Prunable | None = None,
               layer_type: type[WeightMask] = WeightMask) -> dict[str, WeightMask]:
    """Register a mask on every selected parameter of ``model`` (in place); returns the masks by site name.

    Names follow registration order (the order initial per-layer strategies are given in). A Parameter
    shared by several modules gets one mask, registered on each of them. Already masked parameters are
    returned as they are.
    """
    masks: dict[str, WeightMask] = {}
    selected, _ = find_sites(model, prunable)
    for name, site in selected.items():
        existing = next((m for _, owner, attr in site.owners if (m := mask_of(owner, attr)) is not None), None)
        if existing is not None:
            masks[name] = existing
            continue
        first_module = site.owners[0][1]
        mask = layer_type(site.parameter, min_keep, first_module)
        for _, owner, attribute in site.owners:
            parametrize.register_parametrization(owner, attribute, mask)
        masks[name] = mask
    return masks


def masked_layers(model: nn.Module) -> dict[str, WeightMask]:
    """The masks of a wrapped model, by site name, each once, in registration order."""
    out: dict[str, WeightMask] = {}
    seen: set[int] = set()
    for module_name, module in model.named_modules(remove_duplicate=False):
        if not parametrize.is_parametrized(module):
            continue
        for attribute in module.parametrizations:  # type: ignore[union-attr]
            mask = mask_of(module, attribute)
            if mask is not None and id(mask) not in seen:
                seen.add(id(mask))
                out[_site_name(module_name, attribute)] = mask
    return out


def mask_sites(model: nn.Module) -> dict[str, Site]:
    """Every masked Parameter of ``model`` with all its holders, by site name."""
    sites: dict[int, Site] = {}
    for module_name, module in model.named_modules(remove_duplicate=False):
        if not parametrize.is_parametrized(module):
            continue
        for attribute in module.parametrizations:  # type: ignore[union-attr]
            mask = mask_of(module, attribute)
            if mask is None:
                continue
            site = sites.setdefault(id(mask), Site(_site_name(module_name, attribute), mask.weight, mask=mask))
            if all(owner is not module or attr != attribute for _, owner, attr in site.owners):
                site.owners.append((module_name, module, attribute))
    return {site.name: site for site in sites.values()}


def unwrap_model(model: nn.Module) -> nn.Module:
    """Remove every mask (in place), leaving the masked values in the original Parameters; returns ``model``.

    A shared Parameter keeps its identity, so tied weights stay tied (and equal the masked model's).
    """
    for site in mask_sites(model).values():
        for _, owner, attribute in site.owners:
            _give_own_class(owner)
            parametrize.remove_parametrizations(owner, attribute, leave_parametrized=True)
    return model


def _give_own_class(module: nn.Module) -> None:
    """Give a parametrized module a class of its own before a parametrization is removed.

    ``remove_parametrizations`` deletes the property from the module's class, and a deepcopy shares the
    class generated for the original: unwrapping a copy would otherwise break the original model.
    """
    cls = type(module)
    module.__class__ = type(cls.__name__, cls.__bases__, dict(cls.__dict__))


def prunable_modules(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """(name, module) for every Conv2d/Linear (masked or not) once, in registration order (channel pruning)."""
    for name, module in model.named_modules():
        if isinstance(module, PRUNABLE_TYPES):
            yield name, module


def fan_in(weight: torch.Tensor | Sequence[int]) -> int:
    """Inputs feeding one output: in_ch * kh * kw for conv, in_features for linear."""
    shape = weight.shape if isinstance(weight, torch.Tensor) else weight
    return math.prod(shape[1:])
