"""What the examples share: a small user-defined CNN and [0, 1] image tensors (the embedded Fashion-MNIST subset
stands in for your own data)."""

from __future__ import annotations

import torch
from torch import nn

import harp_prune as hp


class SmallNet(nn.Module):
    """Any nn.Module on [0, 1] images works; this one normalises its input itself."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2))
        self.head = nn.Linear(32 * 7 * 7, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features((x - 0.29) / 0.35).flatten(1))


def image_tensors(train: int, test: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``train`` and ``test`` images (float, N x 1 x 28 x 28 in [0, 1]) with their labels."""
    data = hp.load_dataset("fashion-mnist-small")
    generator = torch.Generator().manual_seed(0)
    train_index = torch.randperm(len(data.train_y), generator=generator)[:train]
    test_index = torch.randperm(len(data.test_y), generator=generator)[:test]
    train_index, test_index = train_index.numpy(), test_index.numpy()
    return (torch.from_numpy(data.train_x[train_index]).float() / 255, torch.from_numpy(data.train_y[train_index]),
            torch.from_numpy(data.test_x[test_index]).float() / 255, torch.from_numpy(data.test_y[test_index]))
