"""Any nn.Module and the user's own tensors or DataLoaders go through the same pipeline."""

import pytest
import torch
from kept_counts import budget_kept, kept_and_total
from torch import nn
from torch.utils.data import DataLoader

import harp_prune as hp


class UserNet(nn.Module):
    """Not from the zoo: nested containers, a bias-free conv, normalisation done by the user."""

    def __init__(self):
        super().__init__()
        self.body = nn.ModuleDict({"conv": nn.Conv2d(1, 8, 5, stride=2, bias=False), "bn": nn.BatchNorm2d(8)})
        self.head = nn.ModuleList([nn.Linear(8 * 12 * 12, 32), nn.Linear(32, 10)])

    def forward(self, x):
        x = torch.relu(self.body["bn"](self.body["conv"](x - 0.3)))
        return self.head[1](torch.relu(self.head[0](x.flatten(1))))


def test_user_model_with_tensors_and_a_dataloader(tiny_data, tmp_path):
    images = torch.from_numpy(tiny_data.train_x).float() / 255
    labels = torch.from_numpy(tiny_data.train_y)
    test_images = torch.from_numpy(tiny_data.test_x).float() / 255
    test_labels = torch.from_numpy(tiny_data.test_y)
    splits = hp.Splits(
        train=DataLoader(hp.tensor_dataset(images[:500], labels[:500]), batch_size=50, shuffle=True),
        val=hp.tensor_dataset(images[500:], labels[500:]),
        test=hp.tensor_dataset(test_images, test_labels),
    )
    config = hp.build_config(cli_values={
        "out_dir": str(tmp_path / "user"), "progress": False, "attack.steps": 2, "evaluate.pgd_steps": 2,
        "pretrain.epochs": 2, "prune.epochs": 2, "finetune.epochs": 1, "prune.sparsity": 0.95,
        "attack.eps": 0.1, "attack.step_size": 0.025,
    })
    model = UserNet()
    results = hp.run(config, model=model, splits=splits)
    kept, total = kept_and_total(model)  # the user's model, pruned in place
    assert total == 8 * 5 * 5 + 8 * 12 * 12 * 32 + 32 * 10
    assert kept == budget_kept(total, 0.95) and results["pruned"]["kept_weights"] == kept
    assert [layer["name"] for layer in results["pruned"]["layers"]] == ["body.conv", "head.0", "head.1"]
    assert results["pruned"]["natural_acc"] > 0.2

    path = tmp_path / "user" / "finetune" / "final.pt"
    with pytest.raises(hp.HarpError, match="user-defined model; pass the model instance"):
        hp.load_model(path)
    reloaded, _, _ = hp.load_model(path, model=UserNet())
    reloaded.eval(), model.eval()
    assert torch.equal(reloaded(test_images[:16]), model(test_images[:16]))
    assert hp.sparsity_report(reloaded).kept == results["pruned"]["kept_weights"]
