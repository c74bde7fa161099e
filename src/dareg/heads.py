"""Regression heads on a feature vector: the original codebase's sigmoid unit (one per factor) and
DEX's expected value over bins.

Both return predictions (N, K) in the scaled label range, so evaluation is the same for either head.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from dareg.errors import DataError


def bin_edges(labels: np.ndarray, bins: int, binning: str) -> np.ndarray:
    """K + 1 edges over the training labels: `uniform` (equal widths from min to max) or
    `balanced` (the labels' quantiles, so each bin holds about as many training labels)."""
    if len(labels) < bins:
        raise DataError(f"model.bins: {bins} bins need at least as many labeled training images; "
                        f"got {len(labels)}; lower model.bins")
    if binning == "uniform":
        return np.linspace(labels.min(), labels.max(), bins + 1)
    return np.quantile(labels, np.linspace(0.0, 1.0, bins + 1))


def bin_index(labels: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    """The bin of each label: i such that edges[i] <= y < edges[i + 1] (the ends clamp)."""
    return torch.bucketize(labels, edges[1:-1], right=True)


def bin_means(labels: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Mean training label in each bin; an empty bin (possible with `uniform`) takes its centre."""
    index = bin_index(torch.from_numpy(labels), torch.from_numpy(edges)).numpy()
    centres = (edges[:-1] + edges[1:]) / 2
    return np.array([labels[index == k].mean() if np.any(index == k) else centres[k]
                     for k in range(len(centres))], dtype=np.float32)


class SigmoidHead(nn.Module):
    """The original codebase's head: dropout, a linear unit per factor, sigmoid; predictions
    (N, K) in (0, 1) (the DA papers' dSprites head: a sigmoid per factor)."""

    def __init__(self, feature_dim: int, dropout: float, outputs: int = 1):
        super().__init__()
        self.layers = nn.Sequential(nn.Dropout(dropout), nn.Linear(feature_dim, outputs))

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, None]:
        return torch.sigmoid(self.layers(features).float()), None

    def fit_labels(self, labels: np.ndarray) -> None:
        """Nothing to fit: the sigmoid head has no label-dependent buffers."""

    def loss_terms(self, pred, logits, labels) -> dict[str, torch.Tensor]:
        """mse = mean (yhat - y)^2 over labeled samples and factors; labels as pred (N, K)."""
        return {"mse": torch.mean((pred - labels.reshape(pred.shape)) ** 2)}


class DexHead(nn.Module):
    """DEX (Rothe et al.): K logits; prediction = softmax(logits) . bin_means (the expected value).

    `edges` (K + 1) and `bin_means` (K) are buffers, so a checkpoint's state dict carries them;
    `fit_labels` sets them from the training labels before training.
    """

    def __init__(self, feature_dim: int, bins: int, binning: str, loss: str, dropout: float):
        super().__init__()
        self.binning, self.loss = binning, loss
        self.layers = nn.Sequential(nn.Dropout(dropout), nn.Linear(feature_dim, bins))
        self.register_buffer("edges", torch.linspace(0.0, 1.0, bins + 1))
        self.register_buffer("bin_means", (self.edges[:-1] + self.edges[1:]) / 2)

    def fit_labels(self, labels: np.ndarray) -> None:
        """Bins from the training labels (N, 1) (DEX predicts one factor)."""
        labels = labels.reshape(-1)
        edges = bin_edges(labels, len(self.bin_means), self.binning)
        self.edges.copy_(torch.as_tensor(edges, dtype=torch.float32))
        self.bin_means.copy_(torch.as_tensor(bin_means(labels, edges)))

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.layers(features).float()  # (N, bins)
        return (logits.softmax(1) @ self.bin_means)[:, None], logits  # (N, 1), (N, bins)

    def loss_terms(self, pred, logits, labels) -> dict[str, torch.Tensor]:
        """As `loss` asks: ce = mean -log softmax(logits)[bin(y)], mse = mean (yhat - y)^2,
        or both; pred (N, 1), labels (N, 1) or (N,)."""
        terms, labels = {}, labels.reshape(pred.shape)
        if self.loss in ("ce", "both"):
            terms["ce"] = F.cross_entropy(logits, bin_index(labels[:, 0], self.edges))
        if self.loss in ("mse", "both"):
            terms["mse"] = torch.mean((pred - labels) ** 2)
        return terms
