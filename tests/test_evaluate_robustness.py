"""``hp.evaluate_robustness``: one call for any model gives the record, and the numbers, of ``harp evaluate``."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

import harp_prune as hp
from harp_prune.cli import main
from harp_prune.data import load_dataset, make_splits
from harp_prune.evaluation.chunks import gather

EXAMPLES = 40
# the same evaluation on both sides: two attacks (AutoAttack's APGD-CE only, for time), a short eps sweep
CLI_FLAGS = ["--evaluate-attacks", "pgd3,autoattack", "--evaluate-autoattack-version", "apgd-ce",
             "--evaluate-pgd-steps", "3", "--evaluate-eps-sweep", "0.5,1,16", "--evaluate-sanity-examples", "30",
             "--data-eval-batch-size", "16", "--data-test-examples", str(EXAMPLES), "--attack-eps", "0.1",
             "--attack-step-size", "0.025", "--seed", "3", "--device", "cpu", "--no-progress"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A small_cnn pre-training checkpoint after one short epoch."""
    out = tmp_path_factory.mktemp("dense")
    config = hp.build_config(out_dir=str(out), progress=False, device="cpu", pretrain={"epochs": 1},
                             data={"train_examples": 300}, attack={"steps": 2})
    return hp.pretrain(config).path


def test_equals_harp_evaluate_on_the_same_model_and_images(checkpoint, tmp_path):
    output = tmp_path / "eval.json"
    assert main(["evaluate", "--evaluate-checkpoint", str(checkpoint), "--out-dir", str(tmp_path), "--output",
                 str(output), *CLI_FLAGS]) == 0
    cli = json.loads(output.read_text())

    model, _, _ = hp.load_model(checkpoint)
    test = make_splits(load_dataset("fashion-mnist-small"), 0.1, 3, test_limit=EXAMPLES).test
    images, labels = gather(DataLoader(test, batch_size=100))
    record = hp.evaluate_robustness(model, (images, labels), eps=0.1, attacks=["pgd3", "autoattack"],
                                    step_size=0.025, seed=3, batch_size=16, sweep=[0.5, 1, 16], sweep_steps=3,
                                    sweep_examples=30, attack_options={"autoattack_version": "apgd-ce"})

    assert set(cli) - {"checkpoint", "config", "provenance", "environment"} == set(record)
    for key in ("examples", "natural_acc", "robust_acc", "worst_case_acc", "balanced_acc", "flags", "sparsity",
                "kept_weights", "layers", "eps", "norm", "threat_model", "attacks"):
        assert record[key] == cli[key], key
    assert record["sanity"]["robust_acc"] == cli["sanity"]["robust_acc"]
    assert record["attack_details"]["autoattack"]["components"] == cli["attack_details"]["autoattack"]["components"]
    assert record["n_examples"] == EXAMPLES and 0 < record["natural_acc"] <= 1
    json.dumps(record)  # JSON-ready as it is


def test_a_dataloader_gives_the_tensors_result_and_leaves_the_model_and_random_state_alone(test_batch):
    images, labels = test_batch[0][:24], test_batch[1][:24]
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10)).train()
    settings = {"eps": 0.1, "attacks": ["fgsm", "pgd2"], "sweep": None, "seed": 1}
    before = torch.get_rng_state()
    on_tensors = hp.evaluate_robustness(model, (images, labels), **settings)
    on_loader = hp.evaluate_robustness(model, DataLoader(torch.utils.data.TensorDataset(images, labels),
                                                         batch_size=7), **settings)
    assert torch.equal(torch.get_rng_state(), before)
    assert model.training
    for key in ("natural_acc", "robust_acc", "worst_case_acc"):
        assert on_tensors[key] == on_loader[key]
    assert on_tensors["sparsity"] == 0 and "sanity" not in on_tensors and on_tensors["dataset"] == "user data"
    assert on_tensors["attacks"]["pgd2"]["step_size"] == pytest.approx(0.025)  # eps / 4 by default


@pytest.mark.parametrize(("arguments", "message"), [
    ({"eps": 0}, "eps must be > 0"),
    ({"eps": 0.1, "attacks": ["pgd2", "pgd2"]}, "name one attack twice"),
    ({"eps": 0.1, "attacks": ["fgsm"], "attack_options": {"cw_kappa": 5}}, "none of the attacks fgsm takes"),
    ({"eps": 0.1, "attacks": ["bogus"]}, "unknown attack 'bogus'"),
])
def test_bad_arguments_are_one_line_errors(test_batch, arguments, message):
    model = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10))
    with pytest.raises(hp.HarpError, match=message):
        hp.evaluate_robustness(model, (test_batch[0][:4], test_batch[1][:4]), sweep=None, **arguments)


def test_data_that_is_neither_tensors_nor_a_loader_is_refused():
    with pytest.raises(hp.HarpError, match="an \\(images, labels\\) pair of tensors or a DataLoader"):
        hp.evaluate_robustness(nn.Linear(2, 2), torch.zeros(3, 2), eps=0.1)
