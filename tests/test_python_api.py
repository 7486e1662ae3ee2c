"""What the flat API promises about the models it is given: exports reachable from ``harp_prune``, in place said."""

from __future__ import annotations

import copy

import torch
from torch import nn

import harp_prune as hp
from harp_prune import export
from harp_prune.pruning import masked_layers


def _pruned_user_model() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 6, 3), nn.ReLU(), nn.Conv2d(6, 8, 3), nn.Flatten(), nn.Linear(8 * 24 * 24, 10))
    pruner = hp.HarpPruner(0.9)
    pruner.attach(model)
    pruner.finalize()
    return model.eval()


def test_the_exports_are_reachable_from_the_package():
    for name in ("export_model", "export_checkpoint", "slim_model", "load_slim", "save_sparse", "load_sparse",
                 "export_onnx"):
        assert getattr(hp, name) is getattr(export, name)


def test_slim_model_changes_the_model_it_is_given_as_its_docstring_says():
    masked = _pruned_user_model()
    kept = copy.deepcopy(masked)
    x = torch.rand(4, 1, 28, 28)
    slim, _ = hp.slim_model(masked, (1, 28, 28))
    assert slim is masked and not masked_layers(masked)  # the masks are gone from the object given
    assert masked_layers(kept)  # a deep copy keeps them
    assert torch.allclose(slim(x), kept(x), atol=1e-5)
    assert "In place" in hp.slim_model.__doc__ and "in place" in hp.run.__doc__
