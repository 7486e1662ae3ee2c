"""The user's own data: no silent Fashion-MNIST threat model, a loud γ0 default, a stratified validation split."""

from __future__ import annotations

import pytest
import torch

import harp_prune as hp


@pytest.fixture()
def user_splits(test_batch) -> hp.Splits:
    images, labels = test_batch
    train, val = hp.validation_split(images[:150], labels[:150], val_fraction=0.2)
    return hp.Splits(train=train, val=val, test=hp.tensor_dataset(images[150:], labels[150:]))


@pytest.mark.parametrize(("attack", "missing"), [
    ({}, "set attack.eps and attack.step_size"),
    ({"eps": 8 / 255}, "set attack.step_size \\("),
    ({"eps": 0.1, "step_size": None}, "set attack.step_size \\("),  # eps equal to the data set's default, set
])
def test_user_data_without_its_threat_model_is_refused(user_splits, tmp_path, attack, missing):
    config = hp.build_config(out_dir=str(tmp_path), progress=False, attack={k: v for k, v in attack.items() if v})
    for call in (lambda: hp.prepare(config, user_splits), lambda: hp.run(config, model=torch.nn.Linear(2, 2),
                                                                         splits=user_splits)):
        with pytest.raises(hp.HarpError, match=missing) as error:
            call()
        assert "\n" not in str(error.value) and "defaults are meaningless" in str(error.value)


def test_user_data_with_its_threat_model_logs_the_gamma0_it_takes(user_splits, tmp_path, capsys):
    config = hp.build_config(out_dir=str(tmp_path), progress=False, attack={"eps": 8 / 255, "step_size": 2 / 255},
                             prune={"method": "harp-paper"})  # the method with a γ0 (harp adapts its γ)
    ctx = hp.prepare(config, user_splits)
    assert ctx.config.attack.eps == 8 / 255
    assert "prune.gamma0 is not set for your own data: taking γ0 = 0.05, the default for fashion-mnist-small" \
        in capsys.readouterr().out

    chosen = hp.build_config(out_dir=str(tmp_path), progress=False, attack={"eps": 0.1, "step_size": 0.02},
                             prune={"method": "harp-paper", "gamma0": 0.01})
    hp.prepare(chosen, user_splits)
    assert "gamma0" not in capsys.readouterr().out


def test_a_data_set_of_the_registry_keeps_its_defaults(tiny_splits, tmp_path, capsys):
    config = hp.build_config(out_dir=str(tmp_path), progress=False)
    assert hp.prepare(config, tiny_splits).config.attack.eps == 0.1
    assert "gamma0" not in capsys.readouterr().out


def test_validation_split_is_stratified_disjoint_and_seeded(test_batch):
    images, labels = test_batch  # 20 images of each of 10 classes
    train, val = hp.validation_split(images, labels, val_fraction=0.25, seed=1)
    assert len(train) == 150 and len(val) == 50
    assert torch.bincount(val.tensors[1]).tolist() == [5] * 10
    together = torch.cat([train.tensors[0], val.tensors[0]]).flatten(1)
    assert len(torch.unique(together, dim=0)) == len(torch.unique(images.flatten(1), dim=0))
    again, other = hp.validation_split(images, labels, 0.25, seed=1), hp.validation_split(images, labels, 0.25, 2)
    assert torch.equal(again[1].tensors[0], val.tensors[0]) and not torch.equal(other[1].tensors[0], val.tensors[0])
    assert hp.validation_split(images, labels, 0.0)[1] is None


def test_validation_split_refuses_bad_input(test_batch):
    images, labels = test_batch
    with pytest.raises(hp.HarpError, match="validation fraction must be in"):
        hp.validation_split(images, labels, 1.0)
    with pytest.raises(hp.HarpError, match="scaled to \\[0, 1\\]"):
        hp.validation_split(images * 255, labels)
