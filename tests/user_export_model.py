"""A user-defined model (not in the zoo) for the export tests; ``build`` is the ``--model-factory`` target."""

from __future__ import annotations

import torch
from torch import nn


class UserExportNet(nn.Module):
    """Two conv-BN-ReLU blocks and a linear head, normalising its input itself."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.classifier = nn.Linear(16 * 7 * 7, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x - 0.3).flatten(1))


def build() -> UserExportNet:
    return UserExportNet()
