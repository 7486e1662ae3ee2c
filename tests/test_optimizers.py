"""The stage's optimiser comes from the config (SGD by default, the paper's): Adam and AdamW train, resume
exactly (their moments are in last.pt), and an unknown name or a momentum Adam cannot take is one HarpError."""

from __future__ import annotations

import pytest
import torch

from harp_prune.config import build_config
from harp_prune.data import make_loader
from harp_prune.errors import HarpError
from harp_prune.models import build_model
from harp_prune.training import (
    OPTIMIZERS,
    Natural,
    StageCheckpoints,
    StageData,
    StageSettings,
    build_optimizer,
    load_checkpoint,
    run_stage,
)

# what run_stage's checkpoints carry so that they load back (the pipeline adds the pruning and the config)
META = {"model_spec": {"name": "small_cnn", "input_shape": [1, 28, 28], "num_classes": 10, "mean": [0.5],
                       "std": [0.25]}}


class _Interrupted(Exception):
    pass


class _StopAt:
    """A metrics sink that stops the stage when it reports ``epoch`` (before that epoch's checkpoints)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def open(self, stage: str, first_epoch: int):
        return self

    def __call__(self, row: dict) -> None:
        if row["epoch"] == self.epoch:
            raise _Interrupted

    def close(self) -> None:
        pass


def _stage(tiny_splits, out_dir, optimizer: str, resume: bool = False, stop_at: int | None = None):
    torch.manual_seed(0)
    model = build_model("small_cnn", (1, 28, 28), 10, [0.5], [0.25])
    settings = StageSettings("pretrain", epochs=2, lr=1e-3, show_progress=False, optimizer=optimizer,
                             metrics=_StopAt(stop_at) if stop_at is not None else None)
    data = StageData(make_loader(tiny_splits.train, 64, shuffle=True, seed=0),
                     make_loader(tiny_splits.val, 128, shuffle=False, seed=0))
    run_stage(settings, model, list(model.parameters()), Natural(), data, StageCheckpoints(out_dir, META, resume),
              torch.device("cpu"))
    return load_checkpoint(out_dir / "last.pt")


def test_an_interrupted_adam_stage_resumes_to_the_uninterrupted_weights(tiny_splits, tmp_path):
    optimizer = "adam"
    clean = _stage(tiny_splits, tmp_path / "clean", optimizer)
    assert "exp_avg" in next(iter(clean["optimizer"]["state"].values()))  # it really was Adam
    with pytest.raises(_Interrupted):
        _stage(tiny_splits, tmp_path / "killed", optimizer, stop_at=1)
    assert load_checkpoint(tmp_path / "killed" / "last.pt")["epoch"] == 0
    resumed = _stage(tiny_splits, tmp_path / "killed", optimizer, resume=True)
    assert [row["epoch"] for row in resumed["history"]] == [0, 1]
    for key, value in clean["model"].items():
        assert torch.equal(value, resumed["model"][key]), key


def test_sgd_is_the_default_and_every_stage_has_the_flag():
    config = build_config()
    assert [getattr(config, stage).optimizer for stage in ("pretrain", "prune", "finetune")] == ["sgd"] * 3
    config = build_config(cli_values={"prune.optimizer": "adamw"})
    assert (config.pretrain.optimizer, config.prune.optimizer) == ("sgd", "adamw")
    model = torch.nn.Linear(2, 2)
    sgd = build_optimizer("sgd", list(model.parameters()), 0.1, 0.9, 5e-4)
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["momentum"] == 0.9
    adam = build_optimizer("adam", list(model.parameters()), 1e-3, 0.8, 0.0)
    assert isinstance(adam, torch.optim.Adam) and adam.defaults["betas"] == (0.8, 0.999)
    assert set(OPTIMIZERS.names()) >= {"sgd", "adam", "adamw"}


@pytest.mark.parametrize("values, message", [
    ({"finetune.optimizer": "nadam"}, "unknown optimizer 'nadam'; choose one of adam, adamw, sgd"),
    ({"prune.momentum": 1.0}, "prune.momentum must be in [0, 1)"),
])
def test_an_optimizer_setting_that_cannot_work_is_one_line(values, message):
    with pytest.raises(HarpError) as error:
        build_config(cli_values=values)
    assert message in str(error.value) and "\n" not in str(error.value)
