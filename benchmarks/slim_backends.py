"""Channel slimming backends compared: harp-prune's own (export/slim.py) and Torch-Pruning's DependencyGraph.

    python benchmarks/slim_backends.py [--output benchmarks/results/slim_backends.json] [--sparsity 0.5]

Every zoo model, and torchvision's resnet18, mobilenet_v2, efficientnet_b0 and densenet121 (random weights,
no download), gets channel HARP's masks at ``--sparsity`` from random scores (projected onto the budget, as
``harp prune --method harp-channel`` ends), with random BatchNorm statistics so that a wrongly sliced
BatchNorm shows. Each backend then makes a physically smaller model from the masked one. A backend slims a
model correctly when the slim model's output equals the masked model's (largest difference below 1e-4 of
the output's scale) and it has fewer parameters.

* ``harp``: ``slim_model`` (removes a producer's channels where it can, gathers the kept inputs elsewhere);
* ``tp-direct``: each masked layer's dropped input channels handed to Torch-Pruning's
  ``DG.get_pruning_group(layer, prune_in_channels, dropped)``, as a Torch-Pruning user would: it removes them
  from every layer coupled to them (a residual stream, a concatenation), whatever those layers' masks keep;
* ``tp-exact``: the same with only the channels every coupled layer's mask drops, the most Torch-Pruning
  can remove without changing the outputs (it has no index gather).

Torch-Pruning (``pip install torch-pruning``) and torchvision are used as libraries only; their rows are
marked "not installed" when they cannot be imported.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from test_slim import masked_channel_model

from harp_prune.export import slim_model
from harp_prune.export.slim import channel_keep
from harp_prune.models import MODELS, build_model
from harp_prune.pruning.conv import expand_units
from harp_prune.pruning.masked import unwrap_model

TORCHVISION = ("resnet18", "mobilenet_v2", "efficientnet_b0", "densenet121")
TOLERANCE = 1e-4  # of the masked output's largest magnitude


def _optional(module: str) -> Any | None:
    try:
        return __import__(module)
    except Exception:  # not installed, or installed against another torch
        return None


def _models(torchvision: Any | None) -> dict[str, tuple[Callable[[], nn.Module], tuple[int, int, int]]]:
    models: dict[str, tuple[Callable[[], nn.Module], tuple[int, int, int]]] = {}
    for name in MODELS:
        shape = (1, 28, 28) if name.startswith("small_cnn") else (3, 32, 32)
        models[f"zoo/{name}"] = (lambda name=name, shape=shape: build_model(name, shape, 10, [0.5] * shape[0],
                                                                             [0.25] * shape[0]), shape)
    for name in TORCHVISION:
        factory = getattr(torchvision.models, name) if torchvision is not None else None
        models[f"torchvision/{name}"] = (lambda factory=factory: factory(weights=None, num_classes=10), (3, 64, 64))
    return models


def masked_model(make: Callable[[], nn.Module], shape: tuple[int, int, int], sparsity: float) -> nn.Module:
    """``make()`` with random BatchNorm statistics and channel HARP's masks from random scores."""
    torch.manual_seed(0)
    return masked_channel_model(make(), shape, sparsity)[0]


def dropped_inputs(masked: nn.Module) -> dict[str, list[int]]:
    """{layer: the input channels its mask drops} for every masked layer that drops some."""
    keep, _, _ = channel_keep(masked)
    layers = dict(masked.named_modules())
    dropped = {}
    for name, units in keep.items():
        layer = layers[name]
        kept = set(expand_units(units, layer))
        width = layer.in_channels if isinstance(layer, nn.Conv2d) else layer.in_features
        dropped[name] = [c for c in range(width) if c not in kept]
    return {name: channels for name, channels in dropped.items() if channels}


def _harp(masked: nn.Module, shape: tuple[int, int, int], tp: Any) -> nn.Module:
    return slim_model(copy.deepcopy(masked), shape)[0]


class _TorchPruning:
    """Torch-Pruning's dependency graph over the plain copy of a masked model (masked values left in)."""

    def __init__(self, tp: Any, masked: nn.Module, shape: tuple[int, int, int]) -> None:
        self.tp, self.dropped = tp, dropped_inputs(masked)
        self.model = unwrap_model(copy.deepcopy(masked)).eval()
        self.names = {module: name for name, module in self.model.named_modules()}
        self.graph = tp.DependencyGraph().build_dependency(self.model, example_inputs=torch.zeros(1, *shape))

    def reader_group(self, name: str, channels: list[int]) -> Any:
        """The group Torch-Pruning removes input ``channels`` of layer ``name`` with."""
        layer = self.model.get_submodule(name)
        fn = self.tp.prune_conv_in_channels if isinstance(layer, nn.Conv2d) else self.tp.prune_linear_in_channels
        return self.graph.get_pruning_group(layer, fn, channels)

    def _refused(self, item: Any) -> set[int]:
        """The root indices of a group item whose layer reads that channel (its mask keeps the input)."""
        module = item.dep.target.module
        name = self.names.get(module) if isinstance(module, nn.Conv2d | nn.Linear) else None
        depthwise = isinstance(module, nn.Conv2d) and module.groups == module.in_channels == module.out_channels > 1
        if name is None or not (self.graph.is_in_channel_pruning_fn(item.dep.handler) or depthwise):
            return set()
        dropped = set(self.dropped.get(name, ()))
        return {root for index, root in zip(item.idxs, item.root_idxs, strict=True) if index not in dropped}

    def exact_groups(self) -> list[Any]:
        """Torch-Pruning's groups (one per producer, every output channel) cut down to the channels every layer
        in the group has masked out; groups nobody reads (the logits) are left alone."""
        groups = []
        for group in self.graph.get_all_groups(root_module_types=(nn.Conv2d, nn.Linear)):
            readers = [item for item in group.items if self.graph.is_in_channel_pruning_fn(item.dep.handler)]
            if not readers:
                continue
            refused = set().union(*(self._refused(item) for item in group.items))
            removable = [root for root in group.items[0].root_idxs if root not in refused]
            if removable:
                root = group.items[0].dep
                groups.append(self.graph.get_pruning_group(root.target.module, root.handler, removable))
        return groups

    def prune(self, groups: list[Any]) -> nn.Module:
        """Apply ``groups`` at once: each (layer, pruning function) once with the union of its indices, so that
        indices found on the unpruned model stay valid."""
        pending: dict[tuple[int, Any], tuple[Any, set[int]]] = {}
        for group in groups:
            for item in group.items:
                dep, indices = pending.setdefault((id(item.dep.target), item.dep.handler), (item.dep, set()))
                indices.update(item.idxs)
        for dep, indices in pending.values():
            dep(sorted(indices))
        return self.model


def _tp_direct(masked: nn.Module, shape: tuple[int, int, int], tp: Any) -> nn.Module:
    backend = _TorchPruning(tp, masked, shape)
    return backend.prune([backend.reader_group(name, channels) for name, channels in backend.dropped.items()])


def _tp_exact(masked: nn.Module, shape: tuple[int, int, int], tp: Any) -> nn.Module:
    backend = _TorchPruning(tp, masked, shape)
    return backend.prune(backend.exact_groups())


BACKENDS = {"harp": _harp, "tp-direct": _tp_direct, "tp-exact": _tp_exact}


def _error_line(error: Exception) -> str:
    """The error's type and first line, and the file it was raised in."""
    where = traceback.extract_tb(error.__traceback__)[-1].filename.rsplit("/", 2)[-1]
    return f"{type(error).__name__}: {str(error).splitlines()[0][:300] if str(error) else ''} ({where})"


def _parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def compare_backends(masked: nn.Module, shape: tuple[int, int, int], tp: Any | None) -> dict[str, dict[str, Any]]:
    """Per backend: whether it slimmed correctly, its largest relative output difference, kept parameters."""
    x = torch.rand(2, *shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = masked(x)
    dense = _parameters(unwrap_model(copy.deepcopy(masked)))
    rows: dict[str, dict[str, Any]] = {}
    for backend, slim in BACKENDS.items():
        if backend.startswith("tp") and tp is None:
            rows[backend] = {"status": "not installed"}
            continue
        started = time.perf_counter()
        try:
            model = slim(masked, shape, tp)
            with torch.no_grad():
                got = model(x)
        except Exception as error:  # a backend that cannot handle the model is a finding, not a crash
            rows[backend] = {"status": "error", "error": _error_line(error)}
            continue
        difference = (float((got - expected).abs().max() / expected.abs().max())
                      if got.shape == expected.shape else float("inf"))
        kept = _parameters(model)
        correct = difference < TOLERANCE and kept < dense
        rows[backend] = {"status": "correct" if correct else ("not exact" if difference >= TOLERANCE else "no saving"),
                         "max_relative_difference": difference, "parameters": kept, "dense_parameters": dense,
                         "parameter_fraction": kept / dense, "seconds": time.perf_counter() - started}
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="benchmarks/results/slim_backends.json", help="where the JSON goes")
    parser.add_argument("--sparsity", type=float, default=0.5, help="channel HARP's target (fraction of channels)")
    parser.add_argument("--models", default="", help="comma-separated model keys to run (default: all)")
    args = parser.parse_args()
    tp, torchvision = _optional("torch_pruning"), _optional("torchvision")
    chosen = {m for m in args.models.split(",") if m}
    results: dict[str, Any] = {}
    for key, (make, shape) in _models(torchvision).items():
        if chosen and key not in chosen:
            continue
        if key.startswith("torchvision/") and torchvision is None:
            results[key] = {"status": "torchvision not installed"}
            continue
        try:
            masked = masked_model(make, shape, args.sparsity)
        except Exception as error:  # channel HARP itself cannot mask it: no backend has anything to slim
            results[key] = {"status": "not maskable", "error": _error_line(error)}
            print(key, results[key], flush=True)
            continue
        results[key] = {"input_shape": list(shape), "backends": compare_backends(masked, shape, tp)}
        print(key, " ".join(f"{backend}={row['status']}" + (f" ({row['parameter_fraction']:.3f})"
                                                             if "parameter_fraction" in row else "")
                            for backend, row in results[key]["backends"].items()), flush=True)
    versions = {"torch": torch.__version__, "torch_pruning": getattr(tp, "__version__", None),
                "torchvision": getattr(torchvision, "__version__", None)}
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps({"sparsity": args.sparsity, "tolerance": TOLERANCE,
                                             "versions": versions, "models": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
