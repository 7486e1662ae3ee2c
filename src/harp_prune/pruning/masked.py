"""Masks on parameters: learnable scores S and a per-parameter quota r, applied with ``torch.nn.utils.parametrize``.

``wrap_model`` registers a :class:`WeightMask` parametrization on every prunable parameter of *any*
``nn.Module`` (by default the ``weight`` of each Conv2d and Linear and the input projections of
``nn.MultiheadAttention``): every read of that parameter, by the module's own forward or by any other code
(attention reads ``out_proj.weight`` directly), returns ``W * M``. The model keeps its own module types, a
module registered under two names is masked once and masked wherever it runs, and a Parameter shared by two
modules (tied weights) has one mask. ``unwrap_model`` removes the parametrizations and leaves the masked
values in the original Parameters.

The mask itself (top-k of the scores, the STE, the cache) is ``weight_mask.py``.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn.utils import parametrize

from harp_prune.errors import HarpError
from harp_prune.pruning.weight_mask import WeightMask

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
            raise HarpError(f"unknown prunable layer type(s) {', '.join(unknown)} (prune.layer_types); choose from "
                            f"{', '.join(LAYER_TYPES)}")

    def as_dict(self) -> dict[str, list[str]]:
        return {"layer_types": list(self.layer_types), "include_parameters": list(self.include_parameters),
                "exclude": list(self.exclude)}

    def excluded_by(self, *names: str) -> list[str]:
        """The exclude patterns that match any of ``names``."""
        return [pattern for pattern in self.exclude if any(fnmatch.fnmatchcase(name, pattern) for name in names)]


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
    parameter_names: list[str] = []
    matched: set[str] = set()  # include and exclude patterns that matched something
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
            parameter_names.append(full)
            hits = [p for p in prunable.include_parameters if fnmatch.fnmatchcase(full, p)]
            matched.update(hits)
            if hits and attribute not in attributes:
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
            hits = prunable.excluded_by(name, full, module_name)
            matched.update(hits)
            if hits:
                excluded_ids.add(key)
    # a pattern that matches nothing is a typo or another model's name: pruning everything would hide it
    _refuse_unmatched(prunable.include_parameters, matched, "prune.include_parameters", "parameter",
                      parameter_names)
    _refuse_unmatched(prunable.exclude, matched, "prune.exclude", "prunable layer",
                      [site.name for site in sites.values()])
    selected = {site.name: site for key, site in sites.items() if key not in excluded_ids}
    excluded = {site.name: site for key, site in sites.items() if key in excluded_ids}
    return selected, excluded


def _refuse_unmatched(patterns: tuple[str, ...], matched: set[str], key: str, what: str, names: list[str]) -> None:
    """A HarpError naming the first of ``patterns`` not in ``matched`` and a few of the ``names`` it could match."""
    unmatched = [pattern for pattern in patterns if pattern not in matched]
    if not unmatched:
        return
    unique = list(dict.fromkeys(names))
    examples = ", ".join(unique[:5]) + (f", ... ({len(unique)} in all)" if len(unique) > 5 else "")
    raise HarpError(f"{key} pattern '{unmatched[0]}' matches no {what} of the model ({what}s: "
                    f"{examples or 'none'}); fix the pattern or remove it")


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
    """The masks of a pruned model by layer name (``net.features.0``; a parameter other than ``weight`` by its full
    name), each once, in registration order; empty for a model without masks. The way to check a model's
    pruning in your own code: each ``WeightMask`` has ``mask()`` (0/1 per score: the weight's shape, one per
    input channel for harp-channel) and ``weight``.

    Example::

        model, pruner, _ = hp.load_model("runs/default/finetune/final.pt")
        for name, layer in hp.masked_layers(model).items():
            print(name, float(layer.mask().mean()))  # the share of the layer's weights kept
    """
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
