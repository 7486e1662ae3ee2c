"""Checkpoints: atomic round-trip, no code unpickled, clear errors for corrupted or foreign files."""

import os
import pickle

import pytest
import torch

from harp_prune.errors import HarpError
from harp_prune.models import build_model
from harp_prune.pruning import HarpPruner
from harp_prune.training import check_state_dict, load_checkpoint, load_model, save_atomic


def _spec(name="small_cnn"):
    return {"name": name, "input_shape": [1, 28, 28], "num_classes": 10, "mean": [0.3], "std": [0.3]}


def test_round_trip_of_a_pruned_model_leaves_no_temporary_file(tmp_path):
    model = build_model("small_cnn", (1, 28, 28), 10, [0.3], [0.3])
    pruner = HarpPruner(0.99)
    pruner.attach(model)
    pruner.finalize()
    path = save_atomic({"model_spec": _spec(), "pruning": pruner.describe(), "model": model.state_dict()},
                       tmp_path / "ckpt.pt")
    assert os.listdir(tmp_path) == ["ckpt.pt"]
    loaded, loaded_pruner, _ = load_model(path)
    x = torch.rand(4, 1, 28, 28)
    model.eval(), loaded.eval()
    assert torch.equal(model(x), loaded(x))
    assert [int(layer.mask().sum()) for layer in loaded_pruner.layers] == \
        [int(layer.mask().sum()) for layer in pruner.layers]
    assert loaded_pruner.layers[0].min_keep == pytest.approx(0.001)


def test_interrupted_write_keeps_the_previous_file(tmp_path, monkeypatch):
    path = save_atomic({"model_spec": _spec(), "model": {}, "value": 1}, tmp_path / "ckpt.pt")

    def explode(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", explode)
    with pytest.raises(KeyboardInterrupt):
        save_atomic({"value": 2}, path)
    monkeypatch.undo()
    assert load_checkpoint(path)["value"] == 1
    assert os.listdir(tmp_path) == ["ckpt.pt"]


def test_truncated_file_is_reported_as_corrupted(tmp_path):
    path = save_atomic({"model": build_model("small_cnn", (1, 28, 28), 10, [0.3], [0.3]).state_dict()},
                       tmp_path / "ckpt.pt")
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(HarpError, match="corrupted or not a harp-prune checkpoint"):
        load_checkpoint(path)


class Payload:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_pickled_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"format": "harp-prune-checkpoint", "x": Payload()}, f, protocol=2)
    with pytest.raises(HarpError, match="corrupted or not a harp-prune checkpoint"):
        load_checkpoint(path)


def test_foreign_torch_file_and_missing_file(tmp_path):
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(HarpError, match="not a harp-prune checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(HarpError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")


def test_checkpoint_of_another_architecture_is_refused():
    small = build_model("small_cnn", (1, 28, 28), 10, [0.3], [0.3])
    wide = build_model("small_cnn_wide", (1, 28, 28), 10, [0.3], [0.3])
    with pytest.raises(HarpError, match=r"written for another model.*of another shape"):
        check_state_dict(small, wide.state_dict(), "ckpt.pt")
    vgg = build_model("vgg16_bn", (1, 28, 28), 10, [0.3], [0.3])
    with pytest.raises(HarpError, match="missing"):
        check_state_dict(vgg, small.state_dict(), "ckpt.pt")
