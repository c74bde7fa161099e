"""Networks: the first seed's 7-conv regressor (with a width multiplier) and its sigmoid head."""
from __future__ import annotations

import torch
from torch import nn

from dareg.params import Model, ParamsError

SINGH7_CHANNELS = (32, 64, 128, 256, 512, 256, 128)
SINGH7_POOLS = 6  # max-pool after conv 2..7


class Singh7(nn.Module):
    """7 conv layers (3x3, same padding, ReLU, max-pool after conv 2-7), dropout, 1 sigmoid output.

    norm="batch" adds BatchNorm after each conv (not in the seed): without it, narrow demo-width
    networks often die at a constant prediction. forward(x) returns (prediction (N,), flattened
    last-conv features (N, feature_dim)).
    """

    def __init__(self, width: float, dropout: float, image_size: int, norm: str = "none"):
        super().__init__()
        if image_size % 2**SINGH7_POOLS:
            raise ParamsError(f"cache.image_size: {image_size} must be a multiple of 64 for singh7 "
                              f"(six 2x2 max-pools); the seed used 128")
        layers: list[nn.Module] = []
        c_in = 3
        for i, channels in enumerate(SINGH7_CHANNELS):
            c_out = max(1, round(channels * width))
            layers.append(nn.Conv2d(c_in, c_out, 3, padding=1, bias=norm == "none"))
            if norm == "batch":
                layers.append(nn.BatchNorm2d(c_out))
            layers.append(nn.ReLU(inplace=True))
            if i >= 1:
                layers.append(nn.MaxPool2d(2))
            c_in = c_out
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.feature_dim = c_in * (image_size // 2**SINGH7_POOLS) ** 2
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.feature_dim, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.features(x)  # (N, C * H' * W')
        return self.head(features).squeeze(1), features


def build_model(params: Model, image_size: int, seed: int | None = None) -> nn.Module:
    """The network named by `model.backbone` (only singh7 so far) with its head; `seed` fixes
    its initial weights without touching the global random state."""
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        return Singh7(params.width, params.dropout, image_size, params.norm)
